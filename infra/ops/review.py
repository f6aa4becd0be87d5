"""`offload review`: the on-call's alarm review, against the local stack or real AWS alike.

What it gathers, in the order an on-call reads it:
1. the stack's alarms (`<stack>-*`): ALARM first, then INSUFFICIENT_DATA, each with its
   description (what it means and what to do first), then how many are OK;
2. each queue lane's depths and dead letters (`offload.aws.queue_depths`);
3. each queue lane's workers, silent ones flagged (`offload.aws.fleet`);
4. recent FAILURE jobs grouped by task and error type, with the latest message and job;
5. jobs stuck STARTED past their time limit (`offload.runtime.stuck`).

It reads AWS directly with the caller's credentials (CloudWatch, SQS, DynamoDB), not
through the API: it must work when the API is the thing that is down.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from offload.aws import clients
from offload.aws.fleet import SILENT_AFTER_BEATS, LaneWorkers, WorkerRegistry, WorkerState
from offload.aws.queue_depths import LaneDepth, lane_depth
from offload.aws.queues import QUEUE_LANES
from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.model import Job, utcnow
from offload.runtime.stuck import stuck_jobs
from offload.settings import Settings

# The order alarms are read in: what fires, what cannot tell, what is fine.
_STATE_ORDER = {"ALARM": 0, "INSUFFICIENT_DATA": 1, "OK": 2}


class AlarmView(BaseModel):
    """One alarm as the review shows it."""

    name: str
    state: str
    since: datetime | None
    reason: str
    guidance: str


class FailureGroup(BaseModel):
    """Failed jobs of one task with one error type."""

    task: str
    error_type: str
    count: int
    latest_message: str
    latest_job_id: str
    latest_at: datetime


class StuckJob(BaseModel):
    """A job STARTED past its time limit."""

    job_id: str
    task: str
    lane: str
    attempts: int
    started_at: datetime | None
    owner: str | None


class Review(BaseModel):
    """Everything `offload review` reports (its `--json` form)."""

    stack: str
    checked_at: datetime
    alarms: list[AlarmView]
    alarms_ok: int
    queues: list[LaneDepth]
    workers: list[LaneWorkers]
    failures_since: datetime
    failures: list[FailureGroup]
    stuck: list[StuckJob]
    # What could not be read (a service unreachable, no permission): the rest still shows.
    problems: list[str]


@dataclass
class Reviewer:
    """Gathers a review.

    :param settings: names the stack, its table and queues.
    :param catalog: the tasks (their time limits judge stuck jobs).
    """

    settings: Settings
    catalog: Catalog

    def review(self, since: timedelta = timedelta(hours=24)) -> Review:
        now = utcnow()
        store = JobStore(self.settings)
        problems: list[str] = []

        def attempt(what: str, read: Any, default: Any) -> Any:
            try:
                return read()
            except Exception as exc:  # unreachable, or no permission: show the rest
                problems.append(f"{what}: {exc}")
                return default

        alarms = attempt("alarms", self.alarms, [])
        firing = [alarm for alarm in alarms if alarm.state != "OK"]
        queues = [
            attempt(f"{lane} queue", lambda lane=lane: lane_depth(self.settings, store, lane), None)
            for lane in QUEUE_LANES
        ]
        registry = WorkerRegistry(self.settings)
        workers = [
            attempt(f"{lane} workers", lambda lane=lane: registry.lane(lane, now), None)
            for lane in QUEUE_LANES
        ]
        failed = attempt("failures", lambda: store.failed_since(now - since, limit=1000), [])
        stuck = [
            job
            for lane in QUEUE_LANES
            for job in attempt(
                f"{lane} stuck jobs",
                lambda lane=lane: stuck_jobs(store, self.catalog, lane, now=now),
                [],
            )
        ]
        return Review(
            stack=self.settings.stack_name,
            checked_at=now,
            alarms=firing,
            alarms_ok=len(alarms) - len(firing),
            queues=[queue for queue in queues if queue is not None],
            workers=[lane for lane in workers if lane is not None],
            failures_since=now - since,
            failures=group_failures(failed),
            stuck=[
                StuckJob(
                    job_id=job.job_id,
                    task=job.task,
                    lane=job.lane,
                    attempts=job.attempts,
                    started_at=job.started_at,
                    owner=job.lease_owner,
                )
                for job in stuck
            ],
            problems=problems,
        )

    def alarms(self) -> list[AlarmView]:
        """The stack's alarms, those firing first."""
        cloudwatch = clients.cloudwatch(self.settings)
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"AlarmNamePrefix": f"{self.settings.stack_name}-"}
        with clients.unavailable_as("CloudWatch"):
            while True:
                page = cloudwatch.describe_alarms(**kwargs)
                found += page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        views = [
            AlarmView(
                name=alarm["AlarmName"],
                state=alarm["StateValue"],
                since=alarm.get("StateUpdatedTimestamp"),
                reason=alarm.get("StateReason", ""),
                guidance=alarm.get("AlarmDescription", ""),
            )
            for alarm in found
        ]
        return sorted(views, key=lambda view: (_STATE_ORDER.get(view.state, 3), view.name))


def group_failures(jobs: list[Job]) -> list[FailureGroup]:
    """Failed jobs by (task, error type), the largest group first; `jobs` newest first."""
    counts: Counter[tuple[str, str]] = Counter()
    latest: dict[tuple[str, str], Job] = {}
    for job in jobs:
        key = (job.task, job.error.type if job.error else "unknown")
        counts[key] += 1
        latest.setdefault(key, job)
    groups = []
    for (task, error_type), count in counts.most_common():
        job = latest[task, error_type]
        groups.append(
            FailureGroup(
                task=task,
                error_type=error_type,
                count=count,
                latest_message=job.error.message[:300] if job.error else "(no error recorded)",
                latest_job_id=job.job_id,
                latest_at=job.updated_at,
            )
        )
    return groups


def render(review: Review) -> str:
    """The review as text for a terminal: sections, aligned tables, guidance in full."""
    lines = [f"offload review of stack {review.stack!r} at {_when(review.checked_at)}", ""]
    lines.append(f"ALARMS: {len(review.alarms)} not OK, {review.alarms_ok} OK")
    for alarm in review.alarms:
        lines.append(f"  [{alarm.state}] {alarm.name} (since {_when(alarm.since)})")
        lines += _wrapped(alarm.guidance, "      ")
        if alarm.reason:
            lines += _wrapped(f"why: {alarm.reason}", "      ")
    lines += ["", "QUEUES"]
    lines += _table(
        ["lane", "waiting", "in flight", "delayed", "dead letters", "oldest waiting"],
        [
            [
                q.lane,
                q.visible,
                q.in_flight,
                q.delayed,
                q.dead_letters,
                "-" if q.oldest_waiting_s is None else f"{q.oldest_waiting_s:.0f} s",
            ]
            for q in review.queues
        ],
    )
    lines += ["", f"WORKERS (silent: no beat for {SILENT_AFTER_BEATS} of its intervals)"]
    for lane in review.workers:
        lines += _workers(lane, review.checked_at)
    lines += ["", f"FAILURES since {_when(review.failures_since)}"]
    if review.failures:
        lines += _table(
            ["count", "task", "error", "latest", "latest job"],
            [
                [g.count, g.task, g.error_type, g.latest_message[:60], g.latest_job_id]
                for g in review.failures
            ],
        )
    else:
        lines.append("  none")
    lines += ["", "STUCK (STARTED past their time limit)"]
    if review.stuck:
        lines += _table(
            ["job", "task", "lane", "attempts", "started", "held by"],
            [
                [s.job_id, s.task, s.lane, s.attempts, _when(s.started_at), s.owner or "-"]
                for s in review.stuck
            ],
        )
    else:
        lines.append("  none")
    if review.problems:
        lines += ["", "COULD NOT READ"] + [f"  {problem}" for problem in review.problems]
    return "\n".join(lines) + "\n"


def _workers(lane: LaneWorkers, now: datetime) -> list[str]:
    if not lane.workers:
        return [f"  {lane.lane}: no workers"]
    counts = [f"{lane.live} live"]
    counts += [f"{lane.stopping} stopping"] if lane.stopping else []
    counts += [f"{lane.silent} SILENT"] if lane.silent else []
    more = f" (the first {len(lane.workers)} shown)" if lane.truncated else ""
    lines = [f"  {lane.lane}: {', '.join(counts)}{more}"]
    rows = []
    for w in lane.workers:
        shown = ", ".join(w.jobs[:3]) + (f" +{w.jobs_running - 3}" if w.jobs_running > 3 else "")
        rows.append(
            [
                w.worker_id,
                w.state.value.upper() if w.state is WorkerState.SILENT else w.state.value,
                _ago((now - w.last_beat).total_seconds()),
                _when(w.started_at),
                f"{w.jobs_running} of {w.concurrency or '?'}",
                shown or "-",
            ]
        )
    header = ["worker", "state", "last beat", "started", "running", "jobs"]
    return lines + ["  " + line for line in _table(header, rows)]


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 7200 else f"{seconds / 3600:.1f} h ago"


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _wrapped(text: str, indent: str, width: int = 96) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(indent + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(indent + line)
    return lines
