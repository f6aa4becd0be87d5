"""The task catalog: `@task` declares a task once, with its lane, payload model and policy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from offload.errors import InvalidPayload, TaskDeclarationError, UnknownTask
from offload.job import LANES, Lane

if TYPE_CHECKING:
    from offload.context import JobContext

# Inline work runs in the API process after the response; anything longer than this belongs
# on a queue lane. It is "a few seconds" stretched to fit `diag.nap`'s 10 s ceiling.
INLINE_MAX_TIMEOUT_S = 15.0
# SQS holds a message 14 days; a retry later than half a day is a schedule, not a backoff.
MAX_BACKOFF_S = 12 * 3600.0

TaskFn = Callable[[Any, "JobContext"], Any]
F = TypeVar("F", bound=TaskFn)


@dataclass(frozen=True)
class TaskSpec:
    """A declared task: what it is called, where it runs and how hard to try."""

    name: str
    lane: Lane
    payload: type[BaseModel]
    fn: TaskFn
    max_attempts: int
    timeout_s: float
    backoff_s: float
    backoff_max_s: float
    description: str

    def parse(self, payload: Any) -> BaseModel:
        """Validate a raw payload; `InvalidPayload` names each bad field."""
        if isinstance(payload, self.payload):
            return payload
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        try:
            return self.payload.model_validate(payload)
        except ValidationError as exc:
            raise InvalidPayload.from_validation(self.name, exc) from None

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
    ) -> Callable[[F], F]:
        """Declare the decorated function as task `name` (see `offload.task`)."""

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
            )
            self.add(spec)
            return fn

        return register


def declare(
    name: str,
    fn: TaskFn,
    *,
    lane: Lane,
    payload: type[BaseModel],
    max_attempts: int,
    timeout_s: float,
    backoff_s: float,
    backoff_max_s: float,
) -> TaskSpec:
    """Check a declaration and build its spec; every mistake is refused here, at import."""
    if not name or name != name.strip() or len(name) > 128:
        raise TaskDeclarationError(f"task name {name!r} must be 1-128 characters, no spaces")
    if lane not in LANES:
        raise TaskDeclarationError(f"task {name!r}: unknown lane {lane!r}; lanes are {LANES}")
    if lane == "sagemaker":
        raise TaskDeclarationError(f"task {name!r}: the sagemaker lane is not available yet")
    if not (isinstance(payload, type) and issubclass(payload, BaseModel)):
        raise TaskDeclarationError(f"task {name!r}: payload must be a pydantic model class")
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
    )


CATALOG = Catalog()

# `@task(...)` declares in the process catalog. Keep heavy imports inside task bodies.
task = CATALOG.task
