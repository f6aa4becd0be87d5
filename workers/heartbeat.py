"""The visibility heartbeat: while this worker holds messages, they stay invisible to others,
the jobs it runs keep their leases, and a job whose cancellation was asked is stopped.

kombu never extends a message's visibility, and inside a task the receipt handle is not
known (FACTS.md), so this runs in the worker's main process, as a thread over the requests
it has received. It starts when the worker is ready and stops only at the very end of its
shutdown, so jobs that finish during a warm shutdown stay covered.

Each round also records the worker in the fleet's table (offload.aws.fleet: one put per beat,
the jobs it runs), where `GET /workers`, the dashboard and `offload review` find it; a clean
stop removes it. Nothing there may stop the heartbeat: a failed write waits for the next beat.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from offload.aws import clients, transitions
from offload.aws.fleet import WorkerIdentity, WorkerRegistry
from offload.aws.queues import QUEUE_LANES
from offload.aws.store import JobStore
from offload.core.holders import Worker
from offload.core.model import JobStatus
from offload.errors import AwsUnavailable, JobStateConflict
from offload.settings import Settings

log = logging.getLogger(__name__)


def lease_owner(hostname: str, pid: int) -> str:
    """The lease owner of a pool process: a process runs one job at a time."""
    return f"{hostname}/{pid}"


class Heartbeat:
    """Extends the visibility of every received message and renews the running jobs' leases.

    :param settings: the visibility timeout, lease length and beat interval.
    :param pool: the worker's pool, to stop a job whose lease another worker took over.
    :param requests: a callable returning the worker's received requests.
    :param registry: the fleet's table; the settings' by default.
    :param identity: this worker in that table; by default from the pool's app (the lanes it
        consumes), and none (nothing recorded) for a pool without one.
    """

    def __init__(
        self,
        settings: Settings,
        pool: Any,
        requests: Any,
        registry: WorkerRegistry | None = None,
        identity: WorkerIdentity | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.requests = requests
        self.store = JobStore(settings)
        # A beat's write waits a few seconds at most (2 s an attempt): a slow DynamoDB must
        # not push back the next round of visibility extensions; the next beat writes again.
        self.registry = registry or WorkerRegistry(settings, timeout_s=2.0)
        self.identity = identity or _identity_of(pool)
        # Job ids whose lease this worker renewed at least once, and the attempt renewed.
        self._held: dict[str, int] = {}
        self._stop = threading.Event()
        self._grace: threading.Timer | None = None
        self._thread = threading.Thread(target=self._loop, name="offload-heartbeat", daemon=True)

    def start(self) -> None:
        """Beat every `heartbeat_interval_s` until `stop`."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (the worker is gone: its messages and leases may lapse)."""
        self._stop.set()
        if self._grace is not None:
            self._grace.cancel()
            if self._grace.is_alive():
                self._grace.join(timeout=10)  # a release under way must finish first
        if self._thread.is_alive():
            self._thread.join(timeout=10)  # its last act removes this worker from the fleet
        elif self._thread.ident is None:
            self._leave()  # never started: beaten by hand (tests)

    def release_after(self, grace_s: float) -> None:
        """The worker is stopping: jobs still running after `grace_s` are released."""
        if self._grace is None:
            self._grace = threading.Timer(grace_s, self._release_running)
            self._grace.daemon = True
            self._grace.start()

    def _release_running(self) -> None:
        for request in self._snapshot():
            if not request.worker_pid or self._stop.is_set():
                continue
            owner = lease_owner(request.hostname, request.worker_pid)
            log.warning("job %s: shutdown grace over; handing it to another worker", request.id)
            # Stop the task first, so it never runs beside the attempt that takes over.
            _kill(request)
            self._held.pop(request.id, None)
            try:
                self.store.apply(transitions.release(request.id, Worker(owner)))
            except (AwsUnavailable, JobStateConflict) as exc:
                log.warning("job %s: lease not released (%s); it lapses instead", request.id, exc)
            self._make_visible(request)

    def _make_visible(self, request: Any) -> None:
        failure = self._set_visibility(request, 0)
        if failure:
            log.info("job %s: message not released (%s); kombu restores it", request.id, failure)

    def _loop(self) -> None:
        # In the fleet at once, not a beat after the worker is ready.
        self._record([r.id for r in self._snapshot() if r.worker_pid])
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self.beat()
            except Exception:
                log.exception("heartbeat round failed; trying again next round")
        # Here, not in `stop`: after this thread's last beat, so no beat can follow it.
        self._leave()

    def beat(self) -> None:
        """One round over the received requests, then one write to the fleet's table."""
        live = set()
        running = []
        for request in self._snapshot():
            live.add(request.id)
            self._extend(request)
            if request.worker_pid:
                running.append(request.id)
                self._renew(request)
        self._held = {job_id: n for job_id, n in self._held.items() if job_id in live}
        self._record(running)

    def _record(self, running: list[str]) -> None:
        if self.identity is None:
            return
        try:
            self.registry.beat(
                self.identity,
                running,
                # Shutting down warm: the grace timer runs from `release_after`.
                stopping=self._grace is not None,
                beat_interval_s=self.settings.heartbeat_interval_s,
            )
        except Exception as exc:  # never the heartbeat's end: the next beat writes it again
            log.warning(
                "worker registry: beat of %s not recorded (%s); trying again next beat",
                self.identity.worker_id,
                _reason(exc),
            )

    def _leave(self) -> None:
        if self.identity is None:
            return
        try:
            self.registry.leave(self.identity)
        except Exception as exc:  # it reads as silent, then expires
            log.warning(
                "worker registry: removal of %s failed (%s); it will show as silent",
                self.identity.worker_id,
                _reason(exc),
            )

    def _snapshot(self) -> list[Any]:
        # The consumer adds requests from another thread; retry the copy if it raced.
        for _ in range(5):
            try:
                return list(self.requests())
            except RuntimeError:
                continue
        return []

    def _extend(self, request: Any) -> None:
        failure = self._set_visibility(request, self.settings.queue_visibility_timeout_s)
        if failure:
            # Acked meanwhile (finished), or SQS unreachable: the next round tries again.
            log.info("visibility of job %s not extended: %s", request.id, failure)

    def _set_visibility(self, request: Any, seconds: int) -> str | None:
        """Set the visibility of the request's SQS message; the reason when that failed."""
        info = request.message.delivery_info
        try:
            receipt = info["sqs_message"]["ReceiptHandle"]
            queue_url = info["sqs_queue"]
        except (KeyError, TypeError):
            return None  # not an SQS delivery (eager calls in tests)
        try:
            with clients.unavailable_as("SQS"):
                clients.sqs(self.settings).change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
                )
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return None

    def _renew(self, request: Any) -> None:
        owner = lease_owner(request.hostname, request.worker_pid)
        try:
            renewal = transitions.renew(request.id, Worker(owner), self.settings.lease_s)
            job = self.store.apply(renewal)
        except AwsUnavailable as exc:
            log.warning("lease of job %s not renewed: %s", request.id, exc)
            return
        except JobStateConflict as conflict:
            self._lost(request, owner, conflict)
            return
        self._held[request.id] = job.attempts
        if job.cancel_requested:
            self._cancel(request, job.attempts)

    def _cancel(self, request: Any, attempt: int) -> None:
        # The task did not stop at a progress report (it may report none): stop it here.
        try:
            self.store.apply(transitions.revoke_running(request.id, attempt))
        except (AwsUnavailable, JobStateConflict) as exc:
            log.warning(
                "job %s: cancellation not recorded (%s); trying next round", request.id, exc
            )
            return
        self._held.pop(request.id, None)
        spec = getattr(request.task, "offload_spec", None)
        if spec is not None and spec.batch is not None:
            # Its process runs other jobs' batch too: let the call end; the job's result is
            # refused, since the job is REVOKED now.
            log.info("job %s cancelled while its batch runs: result will be dropped", request.id)
            return
        log.info("job %s cancelled while running: stopping its task", request.id)
        request.terminate(self.pool, signal="SIGKILL")

    def _lost(self, request: Any, owner: str, conflict: JobStateConflict) -> None:
        job = conflict.current
        if job is None or job.status.terminal or request.id not in self._held:
            return  # finished, or never ours (the delivery found the job busy elsewhere)
        if (
            job.status is not JobStatus.STARTED
            or job.lease_owner == owner
            # The task parked its own attempt, then returned. (A later attempt, parked by a
            # worker that took the job over, is not ours: this run must stop.)
            or (job.parked_on is not None and job.attempts == self._held.get(request.id))
        ):
            # Our attempt ended (RETRY recorded) while the process goes on, e.g. with the rest
            # of a batch: nobody else runs the job, so nothing may be killed for it.
            self._held.pop(request.id, None)
            return
        log.error(
            "job %s: %s lost its lease to %s; stopping its task", request.id, owner, job.lease_owner
        )
        self._held.pop(request.id, None)
        # Another worker runs the job now: this run must not go on beside it.
        _kill(request)


def _identity_of(pool: Any) -> WorkerIdentity | None:
    """This worker in the fleet's table: the queue lanes its Celery app consumes."""
    queues = getattr(getattr(getattr(pool, "app", None), "amqp", None), "queues", None)
    if queues is None:
        return None
    consumed = queues.consume_from if queues.consume_from is not None else queues  # no -Q: all
    lanes = tuple(lane for lane in QUEUE_LANES if lane in consumed)
    return WorkerIdentity(lanes=lanes, concurrency=getattr(pool, "limit", None)) if lanes else None


def _reason(exc: Exception) -> str:
    # AWS's error code, not its message: logs quote only offload's own messages.
    if isinstance(exc, AwsUnavailable):
        return str(exc)
    return clients.error_code(exc) or type(exc).__name__


def _kill(request: Any) -> None:
    """End the pool process running `request` as a crash would.

    Not `request.terminate()`: Celery takes a terminated task as revoked and acks its
    message, which would delete the job's only delivery. A lost process instead puts the
    message back (task_reject_on_worker_lost), and the job's lease decides who runs it.
    """
    try:
        os.kill(request.worker_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
