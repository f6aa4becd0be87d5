"""Who holds a started job's lease. The store keeps a holder as one string (`lease_owner`);
here it is one of four kinds, so that no caller parses that string itself:

- `Worker`: a Celery worker process of a queue lane (`celery@host/pid`, say);
- `Inline`: the inline runner of an API process (`inline/<host>/<pid>`);
- `Endpoint`: a SageMaker endpoint an attempt was sent to (`sagemaker:<endpoint>`);
- `ParkedOn`: nobody. The attempt waits for a job it submitted (`waiting:<child id>`), and
  the lease's expiry is when a delivery looks again (offload.runtime.waiting).
"""

from __future__ import annotations

from dataclasses import dataclass

_INLINE = "inline"
_ENDPOINT = "sagemaker:"
_PARKED = "waiting:"


@dataclass(frozen=True)
class Worker:
    """A queue lane's worker process, by its lease name."""

    name: str

    def encoded(self) -> str:
        """The stored form."""
        return self.name


@dataclass(frozen=True)
class Inline:
    """An API process's inline runner, by its lease name (`inline` or `inline/<host>/<pid>`)."""

    name: str = _INLINE

    def encoded(self) -> str:
        """The stored form."""
        return self.name


@dataclass(frozen=True)
class Endpoint:
    """The SageMaker endpoint an attempt runs on (nobody renews its lease)."""

    endpoint: str

    def encoded(self) -> str:
        """The stored form."""
        return _ENDPOINT + self.endpoint


@dataclass(frozen=True)
class ParkedOn:
    """No runner: the attempt waits until job `child_id` ends."""

    child_id: str

    def encoded(self) -> str:
        """The stored form."""
        return _PARKED + self.child_id


LeaseHolder = Worker | Inline | Endpoint | ParkedOn


def holder_of(encoded: str | None) -> LeaseHolder | None:
    """The holder a stored `lease_owner` names (None: no lease was ever taken)."""
    if encoded is None:
        return None
    if encoded.startswith(_PARKED):
        return ParkedOn(encoded.removeprefix(_PARKED))
    if encoded.startswith(_ENDPOINT):
        return Endpoint(encoded.removeprefix(_ENDPOINT))
    if encoded == _INLINE or encoded.startswith(_INLINE + "/"):
        return Inline(encoded)
    return Worker(encoded)


def runner(name: str) -> Worker | Inline:
    """The holder of a process that runs attempts itself, from its lease name."""
    holder = holder_of(name)
    if not isinstance(holder, Worker | Inline):
        raise ValueError(f"{name!r} names no process that runs attempts")
    return holder
