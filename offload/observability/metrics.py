"""Job metrics as CloudWatch embedded metric format (EMF) lines, through Powertools.

One EMF line per event, each with its own `task` and `lane` dimensions (Powertools'
`single_metric`): a process handles many tasks, and one flushed set would share dimensions.
On Lambda, CloudWatch Logs turns the lines into metrics; on EC2 workers, the CloudWatch
agent's EMF listener or log collection does.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"
DEFAULT_NAMESPACE = "offload"


def count(name: str, task: str, lane: str, value: float = 1) -> None:
    """Add `value` to the count metric `name` of a task and lane."""
    _emit(name, "Count", value, task, lane)


def milliseconds(name: str, task: str, lane: str, value_ms: float) -> None:
    """Record a duration metric `name` of a task and lane."""
    _emit(name, "Milliseconds", value_ms, task, lane)


def lane_count(name: str, lane: str, value: float) -> None:
    """Record a count metric `name` of a whole lane (the sweep's gauges: StuckJobs)."""
    _emit(name, "Count", value, None, lane)


def _emit(name: str, unit: str, value: float, task: str | None, lane: str) -> None:
    try:
        # Imported on first use, not on the API handler's cold start.
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        with single_metric(
            name=name,
            unit=MetricUnit(unit),
            value=value,
            namespace=os.environ.get(NAMESPACE_ENV, DEFAULT_NAMESPACE),
            default_dimensions={"lane": lane} if task is None else {"task": task, "lane": lane},
        ):
            pass
    except Exception:
        # A metric is never worth a job: log and go on.
        log.warning("metric %s not emitted", name, exc_info=True)
