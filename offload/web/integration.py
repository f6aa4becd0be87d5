"""offload in a FastAPI app: `Offload(...).install(app)`, then `jobs: JobsDep` in any route.

```python
@app.post("/signup")
async def signup(user: NewUser, jobs: JobsDep) -> dict[str, str]:
    job = await jobs.submit("notify.webhook", {"event": "signup", "id": user.id})
    return {"job_id": job.job_id}
```
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import BackgroundTasks, Depends, FastAPI, Request

from offload.aws.dlq import DeadLetters
from offload.aws.queues import QueuePublisher
from offload.aws.sagemaker import SageMakerInvoker
from offload.aws.store import JobStore
from offload.core.catalog import Catalog, TaskSpec
from offload.observability.logs import request_id_var
from offload.settings import Settings
from offload.submit.jobs import Jobs
from offload.submit.quotas import InFlightQuota
from offload.web.callers import Callers
from offload.web.request_ids import RequestIdMiddleware

if TYPE_CHECKING:
    from offload.runtime.inline import InlineRunner


class AfterResponse(Protocol):
    """Where a request's inline jobs wait while the process may not run them: on Lambda,
    until the handler returns (offload.aws_lambda.inline)."""

    @property
    def active(self) -> int:
        """How many of its jobs run now."""

    def defer(self, spec: TaskSpec, job_id: str, payload: Any) -> None:
        """Keep an inline job until the request's handler returns."""


# Set by offload's Lambda handler for the length of its call: requests it serves defer their
# inline jobs there. Requests reaching the same app another way (uvicorn) run theirs as usual.
serving: ContextVar[AfterResponse | None] = ContextVar("offload_lambda_inline", default=None)


class Offload:
    """offload's parts for one app: the store, the queue publisher and the inline runner."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = JobStore(settings)
        self.publisher = QueuePublisher(settings)
        self.dead_letters = DeadLetters(self.store, self.publisher, catalog)
        self.callers = Callers(settings)
        self.sagemaker = SageMakerInvoker(settings, self.store)
        # Remembers callers' in-flight counts between this process's requests.
        self.quota = InFlightQuota(self.store)
        self._inline: InlineRunner | None = None
        self._running: set[asyncio.Task[Any]] = set()
        # On Lambda (`offload.aws_lambda.handler`): inline jobs wait there for the handler's return.
        self.lambda_inline: AfterResponse | None = None

    @property
    def inline(self) -> InlineRunner:
        """The inline runner of this app's event loop, made when its first inline job runs."""
        if self._inline is None:
            self._inline = self.new_inline_runner()
        return self._inline

    def new_inline_runner(self) -> InlineRunner:
        """An inline runner with this app's settings (one per event loop that runs jobs)."""
        # Imported here: the API's import loads no attempt runtime (a cold start pays for it
        # only once an inline job runs; an app with no inline task never does).
        from offload.runtime.inline import InlineRunner
        from offload.submit.children import ChildJobs

        return InlineRunner(
            self.store,
            self.publisher,
            self.settings.inline_concurrency,
            self.settings.inline_retry_max_delay_s,
            self.settings.inline_queue_size,
            submitter=ChildJobs(self.catalog, self.store),
        )

    def install(self, app: FastAPI) -> FastAPI:
        """Make `JobsDep` work in `app`'s routes, and give each request an id."""
        app.state.offload = self
        app.add_middleware(RequestIdMiddleware)
        return app

    def run_soon(self, spec: TaskSpec, job_id: str, payload: Any) -> None:
        """Start an inline job on the event loop, detached from the request that submitted it.

        Run inside the request's background tasks, the job would hold that request's ASGI
        cycle open, and uvicorn serves the next request on the same keep-alive connection
        only after it: a client polling its own job would wait for the job to finish.
        """
        task = asyncio.get_running_loop().create_task(self.inline.run(spec, job_id, payload))
        self._running.add(task)  # keep a reference until done, or the loop may drop it
        task.add_done_callback(self._running.discard)

    async def start_after_response(self, spec: TaskSpec, job_id: str, payload: Any) -> None:
        """A background task (run once the response is sent) that starts an inline job."""
        self.run_soon(spec, job_id, payload)

    async def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for running inline jobs (at shutdown)."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)


def get_offload(request: Request) -> Offload:
    """The app's `Offload`."""
    offload: Offload = request.app.state.offload
    return offload


OffloadDep = Annotated[Offload, Depends(get_offload)]


def get_caller(request: Request, offload: OffloadDep) -> str:
    """Who is asking (`Settings.auth`); `Unauthenticated` (401) when nobody can be told."""
    return offload.callers.caller(request.headers, request.scope.get("aws.event"))


CallerDep = Annotated[str, Depends(get_caller)]


def get_operator(offload: OffloadDep, caller: CallerDep) -> str:
    """The caller, if an operator (`Settings.operators`); `Forbidden` (403) otherwise."""
    offload.callers.check_operator(caller)
    return caller


OperatorDep = Annotated[str, Depends(get_operator)]


async def get_jobs(
    offload: OffloadDep, caller: CallerDep, background: BackgroundTasks
) -> AsyncIterator[Jobs]:
    """`Jobs` for this request; inline jobs run after its response is sent."""
    deferred: list[tuple[TaskSpec, str, Any]] = []

    # Set while offload's Lambda handler serves this request; the same app may serve uvicorn.
    lambda_inline = serving.get()

    def defer(spec: TaskSpec, job_id: str, payload: Any) -> None:
        if lambda_inline is not None:
            lambda_inline.defer(spec, job_id, payload)
            return
        deferred.append((spec, job_id, payload))
        background.add_task(offload.start_after_response, spec, job_id, payload)

    try:
        yield Jobs(
            offload.catalog,
            offload.store,
            offload.publisher,
            defer,
            caller=caller,
            request_id=request_id_var.get(),
            sagemaker=offload.sagemaker,
            quota=offload.quota,
        )
    except Exception:
        # The route failed after submitting inline work: its error response carries no
        # background tasks, so run them now rather than leave their jobs PENDING.
        for spec, job_id, payload in deferred:
            offload.run_soon(spec, job_id, payload)
        raise


JobsDep = Annotated[Jobs, Depends(get_jobs)]
