"""Scheduled entry points: the sweep (`sweep`) and periodic jobs (`submit`).

`sweep` runs every few minutes (template.yaml, SweepFunction):
- SNS and SQS deliver SageMaker's notifications at least once, but one can still be lost (a
  topic policy changed, a queue purged, a function failing past its DLQ): it resolves the
  sagemaker jobs that waited too long from the objects SageMaker wrote;
- it counts each queue lane's jobs stuck STARTED past their time limit (`offload.runtime.stuck`) as
  the `StuckJobs` metric, zero included, which an alarm watches;
- it ends FAILURE the jobs whose message SQS dead-lettered by itself after too many
  receives (`offload.runtime.redriven`): no worker is left to end them.

`submit` is the target of the EventBridge Scheduler schedules declared on SchedulerFunction
in template.yaml, the one place periodic jobs are declared. Each schedule's input names a
task and its payload; the scheduled time makes the idempotency key, so a schedule that
fires twice for one time (Scheduler delivers at least once) submits one job.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import tasks
from offload.aws.dlq import DeadLetters
from offload.aws.queues import QUEUE_LANES, QueuePublisher
from offload.aws.store import JobStore
from offload.errors import OffloadError
from offload.observability import logs, metrics
from offload.runtime.redriven import end_redriven
from offload.runtime.sagemaker_lane import SageMakerLane
from offload.runtime.stuck import stuck_jobs
from offload.settings import Settings, get_settings
from offload.submit.jobs import Jobs

log = logging.getLogger(__name__)

settings = get_settings()
logs.configure_on_lambda(
    "offload-scheduler", settings.log_level, error_messages=settings.log_error_messages
)
store = JobStore(settings)
lane = SageMakerLane(settings, store, tasks.catalog())
# Whose jobs scheduled ones are (`GET /jobs` of this caller lists them).
SCHEDULER_CALLER = "scheduler"


class BadSchedule(OffloadError):
    """A schedule's input that does not name a task and payload."""


def sweep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The sweep's entry point: how sagemaker jobs ended up, and stuck jobs per lane."""
    return run_sweep(store, lane, settings)


def run_sweep(store: JobStore, lane: SageMakerLane, settings: Settings) -> dict[str, Any]:
    """One sweep (also run by the local stack's scheduler, infra/local/events.py)."""
    stuck: dict[str, int] = {}
    for queue_lane in QUEUE_LANES:
        try:
            found = stuck_jobs(store, lane.catalog, queue_lane)
        except Exception:
            # No value this round: the alarm treats the gap as firing, which it should.
            log.exception("sweep: stuck jobs of the %s lane not counted", queue_lane)
            continue
        stuck[queue_lane] = len(found)
        metrics.lane_count("StuckJobs", queue_lane, len(found))
        for job in found[:10]:
            log.warning("job %s (%s) stuck STARTED since %s", job.job_id, job.task, job.started_at)
    return {
        "sagemaker": lane.sweep(settings.sagemaker_sweep_after_s),
        "stuck": stuck,
        "redriven": _end_redriven(store, lane),
    }


def _end_redriven(store: JobStore, lane: SageMakerLane) -> dict[str, int]:
    letters = DeadLetters(store, QueuePublisher(store.settings), lane.catalog)
    ended: dict[str, int] = {}
    for queue_lane in QUEUE_LANES:
        try:
            ended[queue_lane] = len(end_redriven(letters, queue_lane))
        except Exception:
            log.exception("sweep: redriven dead letters of the %s lane not looked at", queue_lane)
    return ended


def submit(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A schedule's entry point: submit its job, once per scheduled time."""
    return submit_scheduled(event, store, lane)


def submit_scheduled(event: dict[str, Any], store: JobStore, lane: SageMakerLane) -> dict[str, Any]:
    """Submit the job a schedule's input names (also run by the local stack)."""
    try:
        name = str(event["schedule"])
        task = str(event["task"])
        payload = event.get("payload") or {}
        scheduled_time = str(event["scheduled_time"])
    except (KeyError, TypeError) as exc:
        raise BadSchedule(
            f"a schedule's input needs schedule, task, scheduled_time: {exc}"
        ) from exc
    jobs = Jobs.outside_a_request(lane.catalog, store, SCHEDULER_CALLER, lane.invoker)
    key = f"schedule:{name}:{scheduled_time}"
    job = asyncio.run(jobs.submit(task, payload, idempotency_key=key))
    log.info("schedule %s submitted job %s (%s) for %s", name, job.job_id, task, scheduled_time)
    return {"job_id": job.job_id, "status": job.status.value}
