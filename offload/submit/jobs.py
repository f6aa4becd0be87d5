"""`Jobs`: the one call that submits work, from `POST /jobs` and from the application's routes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from offload.aws import claims
from offload.aws.cancel import request_cancel
from offload.aws.queues import QueuePublisher
from offload.aws.sagemaker import InvokedNotRecorded, SageMakerInvoker
from offload.aws.store import JobStore
from offload.core.catalog import Catalog, TaskSpec
from offload.core.model import Job, JobStatus, utcnow
from offload.core.results import encode
from offload.errors import (
    AwsUnavailable,
    IdempotencyMismatch,
    JobAlreadyExists,
    JobNotFound,
    JobStateConflict,
    PayloadTooLarge,
    TooManyJobsInFlight,
)
from offload.observability import metrics
from offload.submit.quotas import InFlightQuota

log = logging.getLogger(__name__)

# Where an inline job goes after the response: Starlette's BackgroundTasks under uvicorn.
Defer = Callable[[TaskSpec, str, Any], None]

# Job ids for idempotent submits are derived from (caller, key): a repeat lands on the same id.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("5b1f6f7e-4f55-4c47-9d65-0ff10ad0b001")


class Jobs:
    """Submit and read the jobs of one caller.

    :param catalog: the tasks that can be submitted.
    :param store: the job store.
    :param publisher: sends queue-lane jobs to SQS.
    :param defer: schedules an inline job to run after the response.
    :param caller: whose jobs these are.
    :param request_id: the request submitting them (kept on each job, for its logs).
    :param sagemaker: invokes endpoints for sagemaker-lane jobs.
    :param quota: admits the caller's submits; shared by a process's requests, it remembers
        counts between them (by default this `Jobs` has one of its own).
    """

    def __init__(
        self,
        catalog: Catalog,
        store: JobStore,
        publisher: QueuePublisher,
        defer: Defer,
        caller: str = "local",
        request_id: str | None = None,
        sagemaker: SageMakerInvoker | None = None,
        quota: InFlightQuota | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.publisher = publisher
        self.defer = defer
        self.caller = caller
        self.request_id = request_id
        self.sagemaker = sagemaker or SageMakerInvoker(store.settings, store)
        self.quota = quota or InFlightQuota(store)

    @classmethod
    def outside_a_request(
        cls,
        catalog: Catalog,
        store: JobStore,
        caller: str,
        sagemaker: SageMakerInvoker | None = None,
    ) -> Jobs:
        """Jobs submitted where no response is sent (a worker's task, a schedule): an
        inline job has nothing to run after, so it goes to the spill lane's workers."""
        publisher = QueuePublisher(store.settings)
        return cls(catalog, store, publisher, publisher.send, caller=caller, sagemaker=sagemaker)

    async def submit(
        self,
        task: str | Callable[..., Any],
        payload: BaseModel | dict[str, Any],
        *,
        idempotency_key: str | None = None,
        parent_id: str | None = None,
    ) -> Job:
        """Create the job and dispatch it to its task's lane; returns it as PENDING.

        `parent_id`: the job that submits this one and waits for it (woken when it ends).

        Raises `UnknownTask`, `InvalidPayload`, `PayloadTooLarge` or `TooManyJobsInFlight`
        before anything is stored, and `AwsUnavailable` when the job could not be stored or
        dispatched (then no job remains).
        """
        spec = self.catalog.get(task if isinstance(task, str) else _task_name(self.catalog, task))
        data = spec.parse(payload).model_dump(mode="json")
        settings = self.store.settings
        body = encode(data)
        if len(body) > settings.max_payload_bytes:
            raise PayloadTooLarge(len(body), settings.max_payload_bytes)
        job = self._new_job(spec, data, idempotency_key)
        job.parent_id = parent_id
        # A job's own steps (a parent waiting for them) are part of a job already admitted.
        if parent_id is None and not await asyncio.to_thread(self.quota.admits, self.caller):
            if idempotency_key is not None:
                # A repeat of a job that exists is not a new job: answer it as usual.
                with contextlib.suppress(JobNotFound):
                    return await self._repeat(spec, job, idempotency_key)
            raise TooManyJobsInFlight(
                self.caller, settings.max_jobs_in_flight, settings.quota_retry_after_s
            )
        if not claims.fits(settings, data, body):
            # Large payloads travel as a claim on a copy in S3 (offload.aws.claims).
            job.payload = await asyncio.to_thread(
                claims.check_in, settings, job.job_id, "payload", body
            )
        try:
            await asyncio.to_thread(self.store.create, job)
        except JobAlreadyExists:
            return await self._repeat(spec, job, idempotency_key)
        except AwsUnavailable:
            if idempotency_key is None:
                # The put may have landed with its answer lost: a job no message will run,
                # under an id the client never learns. (With a key, its retry sends it.)
                await asyncio.shield(self._discard(job.job_id))
            raise
        await self._dispatch(spec, job)
        self.quota.submitted(self.caller)
        metrics.count("JobsSubmitted", spec.name, spec.lane)
        return job

    async def _repeat(self, spec: TaskSpec, job: Job, idempotency_key: str | None) -> Job:
        """The stored job a repeated submit names (`JobNotFound` when there is none)."""
        existing = await self._existing(job, idempotency_key)
        if existing.status is JobStatus.PENDING and existing.attempts == 0:
            # The first request may have stored the job and then failed to send it (and
            # to discard it). Sending again is safe: a second delivery of a job that has
            # started or ended is dropped by its claim.
            await self._dispatch(spec, existing, discard_on_failure=False)
        return existing

    async def get(self, job_id: str) -> Job:
        """The caller's job; `JobNotFound` for another caller's job too."""
        job = await asyncio.to_thread(self.store.get, job_id)
        if job.caller != self.caller:
            raise JobNotFound(job_id)
        return job

    async def cancel(self, job_id: str) -> Job:
        """Cancel the caller's job: REVOKED now if it has not started, flagged if it runs.

        `JobStateConflict` when it has already ended."""
        await self.get(job_id)
        return await asyncio.to_thread(request_cancel, self.store, job_id)

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        """The job once it changes (or ends), or as it is after `timeout_s`."""
        job = await self.get(job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        interval = 0.1
        while not job.status.terminal and loop.time() < deadline:
            # Polling backs off to 1 s: cheap enough for DynamoDB, quick for short jobs.
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))
            interval = min(interval * 2, 1.0)
            latest = await self.get(job_id)
            if latest.updated_at != job.updated_at:
                return latest
        return job

    async def list(
        self,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: JobStatus | None = None,
        task: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """A page of the caller's jobs, newest first."""
        return await asyncio.to_thread(
            self.store.list_for_caller,
            self.caller,
            limit=limit,
            cursor=cursor,
            status=status,
            task=task,
        )

    def _new_job(self, spec: TaskSpec, payload: Any, idempotency_key: str | None) -> Job:
        now = utcnow()
        request_hash = None
        if idempotency_key is None:
            job_id = str(uuid.uuid4())
        else:
            job_id = str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{self.caller}\n{idempotency_key}"))
            canonical = json.dumps([spec.name, payload], sort_keys=True, separators=(",", ":"))
            request_hash = hashlib.sha256(canonical.encode()).hexdigest()
        return Job(
            job_id=job_id,
            task=spec.name,
            lane=spec.lane,
            status=JobStatus.PENDING,
            max_attempts=spec.max_attempts,
            created_at=now,
            updated_at=now,
            caller=self.caller,
            payload=payload,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            request_id=self.request_id,
        )

    async def _existing(self, job: Job, idempotency_key: str | None) -> Job:
        existing = await asyncio.to_thread(self.store.get, job.job_id)
        if idempotency_key is None or existing.caller != self.caller:
            raise JobAlreadyExists(job.job_id)  # a uuid4 collision: not worth more code
        if existing.request_hash != job.request_hash:
            raise IdempotencyMismatch(idempotency_key, existing.job_id)
        return existing

    async def _dispatch(self, spec: TaskSpec, job: Job, *, discard_on_failure: bool = True) -> None:
        if spec.lane == "inline":
            self.defer(spec, job.job_id, job.payload)
            return
        try:
            if spec.lane == "sagemaker":
                await asyncio.to_thread(self.sagemaker.invoke, spec, job, 1)
            else:
                await asyncio.to_thread(self.publisher.send, spec, job.job_id, job.payload)
        except InvokedNotRecorded as exc:
            # The endpoint has it: the job stands (PENDING until its notification settles
            # it), so the submit succeeded; a 503 would make the client submit it twice.
            log.warning("job %s invoked but not recorded as started: %s", job.job_id, exc)
        except BaseException:
            # Whatever stopped the send (an outage, a refusal, a cancelled request), the job
            # must not stay PENDING with no message to run it.
            if discard_on_failure:
                await asyncio.shield(self._discard(job.job_id))
            raise

    async def _discard(self, job_id: str) -> None:
        try:
            await asyncio.to_thread(self.store.discard_pending, job_id)
        except JobStateConflict as exc:
            if exc.current is not None:
                log.error("job %s was not dispatched and could not be discarded: %s", job_id, exc)
        except AwsUnavailable as exc:
            # Nothing more can be done now; the job's TTL removes it eventually.
            log.error("job %s was not dispatched and could not be discarded: %s", job_id, exc)


def _task_name(catalog: Catalog, fn: Callable[..., Any]) -> str:
    for spec in catalog:
        if spec.fn is fn:
            return spec.name
    raise TypeError(f"{getattr(fn, '__name__', fn)!r} is not a declared task")
