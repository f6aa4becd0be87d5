"""A job's conditional write as data (`Write`), the guard that builds one, and its rendering
as a DynamoDB request. The named changes are in `offload.aws.transitions`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from offload.aws import items
from offload.core.holders import LeaseHolder
from offload.core.model import JobStatus
from offload.core.moves import ENDING, MOVES, Transition, sources

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# The attribute that tells a write's own retry from another writer (offload.aws.store).
WRITE_TOKEN = "write_token"

# How a conflict names what a writer wanted, where "move to <status>" would not say it.
_WANTED = {
    Transition.DISCARD: "be discarded",
    Transition.REOPEN: "be replayed",
    Transition.FLAG_CANCEL: "be flagged for cancellation",
    Transition.RENEW: "renew the lease",
    Transition.RELEASE: "release the lease",
    Transition.PARK: "park the attempt",
    Transition.RESUME: "resume the attempt",
    Transition.WAKE: "wake from the wait",
}


@dataclass(frozen=True)
class Write:
    """One conditional write of one job: what it requires, sets and removes.

    `item` is set for a CREATE (a whole new item); `delete` for a DISCARD. `expires_from` is
    the moment the record's retention counts from, when this write sets it (the store adds
    `expires_at`: the retention period is the store's).
    """

    transition: Transition
    job_id: str
    condition: str
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, AttributeValueTypeDef] = field(default_factory=dict)
    sets: dict[str, AttributeValueTypeDef] = field(default_factory=dict)
    removes: tuple[str, ...] = ()
    item: dict[str, AttributeValueTypeDef] | None = None
    delete: bool = False
    expires_from: datetime | None = None

    def request(
        self, table: str, token: AttributeValueTypeDef, expires_at: int | None
    ) -> dict[str, Any]:
        """The arguments of the DynamoDB call that makes this write: `PutItem` with `item`,
        `DeleteItem` with `delete`, else `UpdateItem`. `token` is stored with the change
        (WRITE_TOKEN); `expires_at` when `expires_from` is set."""
        expiry: dict[str, AttributeValueTypeDef] = (
            {"expires_at": {"N": str(expires_at)}} if expires_at is not None else {}
        )
        common: dict[str, Any] = {
            "TableName": table,
            # On a failed condition, the item as it stands: what the writer lost to.
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if self.item is not None:
            item = {**self.item, **expiry, WRITE_TOKEN: token}
            return {
                **common,
                "Item": item,
                "ConditionExpression": self.condition,
            }
        key = {"job_id": {"S": self.job_id}}
        common.update(
            Key=key,
            ExpressionAttributeNames=dict(self.names),
            ExpressionAttributeValues=dict(self.values),
        )
        if self.delete:
            return {**common, "ConditionExpression": self.condition}
        sets = {WRITE_TOKEN: token, **self.sets, **expiry}
        names = {f"#s{i}": name for i, name in enumerate(sets)}
        values = {f":s{i}": value for i, value in enumerate(sets.values())}
        update = "SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(sets)))
        if self.removes:
            names.update({f"#r{i}": name for i, name in enumerate(self.removes)})
            update += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(self.removes)))
        common["ExpressionAttributeNames"].update(names)
        common["ExpressionAttributeValues"].update(values)
        return {
            **common,
            "UpdateExpression": update,
            # An update would create a missing item: the job must exist.
            "ConditionExpression": f"attribute_exists(job_id) AND {self.condition}",
            "ReturnValues": "ALL_NEW",
        }

    @property
    def wanted(self) -> str:
        """What the write meant to do, for a conflict's message."""
        target = MOVES[self.transition].target
        if self.transition in _WANTED:
            return _WANTED[self.transition]
        if target is None or self.transition is Transition.CREATE:
            return self.transition.value
        return f"move to {target.value}"


class Guard:
    """A condition and the item changes of one write, with placeholder names of their own."""

    def __init__(self, transition: Transition, job_id: str) -> None:
        self.transition = transition
        self.job_id = job_id
        self.parts: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, AttributeValueTypeDef] = {}
        self.sets: dict[str, AttributeValueTypeDef] = {}
        self.removes: list[str] = []
        self.expires_from: datetime | None = None

    def _name(self, attribute: str) -> str:
        self.names[f"#{attribute}"] = attribute
        return f"#{attribute}"

    def _value(self, key: str, value: AttributeValueTypeDef) -> str:
        self.values[f":{key}"] = value
        return f":{key}"

    def status_in(self, statuses: frozenset[JobStatus]) -> Guard:
        names = [self._value(f"from{i}", string(s.value)) for i, s in enumerate(sorted(statuses))]
        self.parts.append(f"{self._name('status')} IN ({', '.join(names)})")
        return self

    def equals(self, attribute: str, value: AttributeValueTypeDef) -> Guard:
        self.parts.append(f"{self._name(attribute)} = {self._value('is_' + attribute, value)}")
        return self

    def absent(self, attribute: str) -> Guard:
        self.parts.append(f"attribute_not_exists({self._name(attribute)})")
        return self

    def attempts(self, attempts: int | None) -> Guard:
        return self if attempts is None else self.equals("attempts", number(attempts))

    def held_by(self, holder: LeaseHolder | None) -> Guard:
        return self if holder is None else self.equals("lease_owner", string(holder.encoded()))

    def lease_seen(self, expires: datetime | None) -> Guard:
        return self if expires is None else self.equals("lease_expires_at", time_value(expires))

    def due_by(self, moment: datetime | None) -> Guard:
        if moment is not None:
            # Timestamps are fixed-width ISO strings: string order is time order.
            due = self._name("next_attempt_at")
            by = self._value("due", time_value(moment))
            self.parts.append(f"(attribute_not_exists({due}) OR {due} <= {by})")
        return self

    def not_cancelled(self) -> Guard:
        return self.absent("cancel_requested")

    def set(self, **attributes: AttributeValueTypeDef) -> Guard:
        self.sets.update(attributes)
        return self

    def remove(self, *attributes: str) -> Guard:
        self.removes.extend(a for a in attributes if a not in self.removes)
        return self

    def moved(self, now: datetime) -> Guard:
        """The status this transition leaves (when it changes it), and when it changed."""
        target = MOVES[self.transition].target
        if target is not None:
            self.sets["status"] = string(target.value)
        self.sets["updated_at"] = time_value(now)
        if self.transition in ENDING:
            self.expires_from = now
            # Out of the sweeps' index and the caller's in-flight count once it ends.
            self.remove("inflight", "inflight_caller")
        if target is JobStatus.FAILURE:
            self.sets["failed"] = string(items.failed_key(self.job_id))  # into the review's index
        return self

    def write(self, *, delete: bool = False) -> Write:
        """The write this guard built (`delete`: the item goes, nothing is set)."""
        return Write(
            self.transition,
            self.job_id,
            " AND ".join(self.parts),
            self.names,
            self.values,
            self.sets,
            tuple(self.removes),
            delete=delete,
            expires_from=self.expires_from,
        )


def guard_of(
    transition: Transition, job_id: str, only: frozenset[JobStatus] | None = None
) -> Guard:
    """A write of `transition`, required to start from a status the table allows for it."""
    return Guard(transition, job_id).status_in(sources(transition, only))


def string(text: str) -> AttributeValueTypeDef:
    return {"S": text}


def number(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def time_value(moment: datetime) -> AttributeValueTypeDef:
    return items.timestamp(moment)


def json_value(value: Any) -> AttributeValueTypeDef:
    return {"S": json.dumps(value)}


def until(now: datetime, seconds: float) -> AttributeValueTypeDef:
    return time_value(now + timedelta(seconds=seconds))
