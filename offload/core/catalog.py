"""The task catalog: `@task` declares a task once, with its lane, payload model and policy."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from offload.core.model import LANES, Lane
from offload.errors import InvalidPayload, TaskDeclarationError, UnknownTask

if TYPE_CHECKING:
    from offload.core.context import JobContext

# Inline work runs in the API process after the response; anything longer than this belongs
# on a queue lane. It is "a few seconds" stretched to fit `diag.nap`'s 10 s ceiling.
INLINE_MAX_TIMEOUT_S = 15.0
# SQS holds a message 14 days; a retry later than half a day is a schedule, not a backoff.
MAX_BACKOFF_S = 12 * 3600.0

TaskFn = Callable[[Any, "JobContext"], Any]
F = TypeVar("F", bound=Callable[..., Any])
# A batched task takes the payloads and contexts of several jobs and returns one result per
# job, in order; an exception in the list fails that job alone.
BatchFn = Callable[[list[Any], list["JobContext"]], list[Any]]
# Largest batch and longest wait a task may declare: beyond them a batch is a job of its own.
MAX_BATCH_SIZE = 256
MAX_BATCH_WAIT_MS = 1000.0


class Payload(BaseModel):
    """The base of task payload models: a field the model does not declare is an error
    (422 naming it), never silently dropped. Nested models derive from it too."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Batch:
    """How a queue-lane task's jobs are gathered into one call (one forward pass).

    :param max_size: at most this many jobs per call.
    :param max_wait_ms: a worker holding fewer waits at most this long for more.
    """

    max_size: int = 16
    max_wait_ms: float = 10.0


@dataclass(frozen=True)
class TaskSpec:
    """A declared task: what it is called, where it runs and how hard to try."""

    name: str
    lane: Lane
    payload: type[BaseModel]
    fn: Callable[..., Any]  # TaskFn, or BatchFn when `batch` is set
    max_attempts: int
    timeout_s: float
    backoff_s: float
    backoff_max_s: float
    description: str
    # Set for batched tasks: `fn` then takes lists (BatchFn).
    batch: Batch | None = None
    # Run once in each worker process before it takes messages (load a model).
    warmup: Callable[[], Any] | None = None
    # sagemaker lane: the endpoint's name after the stack's (`<stack>-<endpoint>`). `fn` then
    # builds the request body the endpoint receives from the payload.
    endpoint: str | None = None

    def call(self, payload: BaseModel, ctx: JobContext) -> Any:
        """Run the task for one job (a batched task as a batch of one)."""
        if self.batch is None:
            return self.fn(payload, ctx)
        (result,) = self.fn([payload], [ctx])
        if isinstance(result, BaseException):
            raise result
        return result

    def parse(self, payload: Any, lane: str | None = None) -> BaseModel:
        """Validate a raw payload; `InvalidPayload` names each bad field (and the `lane` of
        the worker that found it so)."""
        if isinstance(payload, self.payload):
            return payload
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        try:
            return self.payload.model_validate(payload)
        except ValidationError as exc:
            raise InvalidPayload.from_validation(self.name, exc, lane=lane) from None

    def describe(self) -> dict[str, Any]:
        """The catalog entry that `GET /tasks` shows."""
        return {
            "name": self.name,
            "lane": self.lane,
            "description": self.description,
            "payload_schema": self.payload.model_json_schema(),
            "max_attempts": self.max_attempts,
            "timeout_s": self.timeout_s,
            "backoff_s": self.backoff_s,
            "backoff_max_s": self.backoff_max_s,
            "batch": None
            if self.batch is None
            else {"max_size": self.batch.max_size, "max_wait_ms": self.batch.max_wait_ms},
            "endpoint": self.endpoint,
        }


class Catalog:
    """Tasks by name. One per process is the norm (`CATALOG`); tests make their own."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}

    def add(self, spec: TaskSpec) -> None:
        """Register a spec; a second task of the same name is a mistake, not an override."""
        existing = self._tasks.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            raise TaskDeclarationError(f"task {spec.name!r} is declared twice")
        self._tasks[spec.name] = spec

    def get(self, name: str) -> TaskSpec:
        """The spec of `name`, or `UnknownTask`."""
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(name, sorted(self._tasks)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(sorted(self._tasks.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._tasks)

    def task(
        self,
        name: str,
        *,
        lane: Lane,
        payload: type[BaseModel],
        max_attempts: int = 3,
        timeout_s: float = 60.0,
        backoff_s: float = 2.0,
        backoff_max_s: float = 600.0,
        batch: Batch | None = None,
        warmup: Callable[[], Any] | None = None,
        endpoint: str | None = None,
    ) -> Callable[[F], F]:
        """Declare the decorated function as task `name` (see `offload.task`).

        With `batch`, the function takes a list of payloads and a list of contexts and
        returns a list of results (an exception in it fails that job alone); workers gather
        jobs that arrive together into one call."""

        def register(fn: F) -> F:
            spec = declare(
                name,
                fn,
                lane=lane,
                payload=payload,
                max_attempts=max_attempts,
                timeout_s=timeout_s,
                backoff_s=backoff_s,
                backoff_max_s=backoff_max_s,
                batch=batch,
                warmup=warmup,
                endpoint=endpoint,
            )
            self.add(spec)
            return fn

        return register


def declare(
    name: str,
    fn: Callable[..., Any],
    *,
    lane: Lane,
    payload: type[BaseModel],
    max_attempts: int,
    timeout_s: float,
    backoff_s: float,
    backoff_max_s: float,
    batch: Batch | None = None,
    warmup: Callable[[], Any] | None = None,
    endpoint: str | None = None,
) -> TaskSpec:
    """Check a declaration and build its spec; every mistake is refused here, at import."""
    if not name or name != name.strip() or len(name) > 128:
        raise TaskDeclarationError(f"task name {name!r} must be 1-128 characters, no spaces")
    if lane not in LANES:
        raise TaskDeclarationError(f"task {name!r}: unknown lane {lane!r}; lanes are {LANES}")
    if (lane == "sagemaker") != (endpoint is not None):
        raise TaskDeclarationError(
            f"task {name!r}: a sagemaker task names its endpoint (endpoint=...), and only "
            "a sagemaker task does"
        )
    if endpoint is not None and not _ENDPOINT.fullmatch(endpoint):
        raise TaskDeclarationError(
            f"task {name!r}: endpoint {endpoint!r} must be 1-40 letters, digits or hyphens"
        )
    if not (isinstance(payload, type) and issubclass(payload, BaseModel)):
        raise TaskDeclarationError(f"task {name!r}: payload must be a pydantic model class")
    lenient = lenient_models(payload)
    if lenient:
        raise TaskDeclarationError(
            f"task {name!r}: payload model {', '.join(lenient)} ignores fields it does not "
            "declare, so a misspelt field would be dropped without a word; derive it from "
            "offload.Payload, which rejects them, or set model_config = "
            "ConfigDict(extra='forbid') (or extra='allow' to keep them)"
        )
    if max_attempts < 1:
        raise TaskDeclarationError(f"task {name!r}: max_attempts must be at least 1")
    if timeout_s <= 0:
        raise TaskDeclarationError(f"task {name!r}: timeout_s must be positive")
    if backoff_s < 0 or backoff_max_s < backoff_s:
        raise TaskDeclarationError(f"task {name!r}: need 0 <= backoff_s <= backoff_max_s")
    if backoff_max_s > MAX_BACKOFF_S:
        raise TaskDeclarationError(
            f"task {name!r}: backoff_max_s={backoff_max_s:g} exceeds {MAX_BACKOFF_S:g} s; "
            "schedule work that far ahead instead of retrying it"
        )
    if lane == "inline" and timeout_s > INLINE_MAX_TIMEOUT_S:
        raise TaskDeclarationError(
            f"task {name!r}: an inline task may take at most {INLINE_MAX_TIMEOUT_S:g} s "
            f"(declared timeout_s={timeout_s:g}). Inline work runs inside the API after the "
            "response; declare lane='cpu' or lane='gpu' so it runs durably on a queue."
        )
    if batch is not None:
        if lane not in ("cpu", "gpu"):
            raise TaskDeclarationError(
                f"task {name!r}: only cpu and gpu tasks are batched (workers gather their "
                f"messages); lane {lane!r} runs jobs one by one"
            )
        if not 1 <= batch.max_size <= MAX_BATCH_SIZE:
            raise TaskDeclarationError(
                f"task {name!r}: batch max_size must be 1 to {MAX_BATCH_SIZE}"
            )
        if not 0 <= batch.max_wait_ms <= MAX_BATCH_WAIT_MS:
            raise TaskDeclarationError(
                f"task {name!r}: batch max_wait_ms must be 0 to {MAX_BATCH_WAIT_MS:g}"
            )
    if warmup is not None and not callable(warmup):
        raise TaskDeclarationError(f"task {name!r}: warmup must be callable")
    doc = (fn.__doc__ or "").strip().splitlines()
    return TaskSpec(
        name=name,
        lane=lane,
        payload=payload,
        fn=fn,
        max_attempts=max_attempts,
        timeout_s=float(timeout_s),
        backoff_s=float(backoff_s),
        backoff_max_s=float(backoff_max_s),
        description=doc[0] if doc else "",
        batch=batch,
        warmup=warmup,
        endpoint=endpoint,
    )


def lenient_models(model: type[BaseModel]) -> list[str]:
    """The names of `model` and the models nested in its fields that ignore unknown fields
    (pydantic's default): each must forbid them, or keep them on purpose (extra='allow')."""
    found: list[str] = []
    seen: set[type[BaseModel]] = set()

    def visit(current: type[BaseModel]) -> None:
        if current in seen:
            return
        seen.add(current)
        if current.model_config.get("extra") not in ("forbid", "allow"):
            found.append(current.__name__)
        for field in current.model_fields.values():
            for kind in _types_in(field.annotation):
                visit(kind)

    visit(model)
    return found


def _types_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation names, however deep (`list[Row] | None`, `dict[str, Row]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _types_in(arg)


# Endpoint names allow 63 characters; this leaves room for the stack's name before it.
_ENDPOINT = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,39}")

CATALOG = Catalog()

# `@task(...)` declares in the process catalog. Keep heavy imports inside task bodies.
task = CATALOG.task
