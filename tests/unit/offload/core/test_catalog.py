from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field

from offload.core.catalog import INLINE_MAX_TIMEOUT_S, Catalog, Payload
from offload.errors import InvalidPayload, TaskDeclarationError, UnknownTask


class Rows(Payload):
    rows: list[int] = Field(min_length=1)
    title: str


def noop(payload: Any, ctx: Any) -> None:
    """Do nothing."""


def test_declared_task_is_listed_with_its_policy() -> None:
    catalog = Catalog()
    catalog.task("x.y", lane="cpu", payload=Rows, max_attempts=4, timeout_s=30)(noop)
    spec = catalog.get("x.y")
    assert (spec.lane, spec.max_attempts, spec.timeout_s) == ("cpu", 4, 30.0)
    entry = spec.describe()
    assert entry["description"] == "Do nothing."
    assert entry["payload_schema"]["required"] == ["rows", "title"]


def test_long_inline_task_is_refused_with_advice() -> None:
    catalog = Catalog()
    with pytest.raises(TaskDeclarationError) as caught:
        catalog.task("slow", lane="inline", payload=Rows, timeout_s=INLINE_MAX_TIMEOUT_S + 1)(noop)
    assert "lane='cpu'" in str(caught.value)
    assert "slow" not in catalog


def test_short_inline_task_is_accepted() -> None:
    catalog = Catalog()
    catalog.task("quick", lane="inline", payload=Rows, timeout_s=INLINE_MAX_TIMEOUT_S)(noop)
    assert "quick" in catalog


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"lane": "tpu"}, "unknown lane"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"backoff_s": 10, "backoff_max_s": 1}, "backoff"),
        ({"lane": "sagemaker"}, "names its endpoint"),
        ({"endpoint": "llm"}, "only a sagemaker task"),
        ({"lane": "sagemaker", "endpoint": "no_underscores"}, "letters, digits or hyphens"),
        ({"backoff_max_s": 43201}, "43200"),
    ],
)
def test_bad_declarations_are_refused(kwargs: dict[str, Any], words: str) -> None:
    options: dict[str, Any] = {"lane": "cpu", "payload": Rows, **kwargs}
    with pytest.raises(TaskDeclarationError, match=words):
        Catalog().task("t", **options)(noop)


def test_payload_must_be_a_model() -> None:
    with pytest.raises(TaskDeclarationError, match="pydantic"):
        Catalog().task("t", lane="cpu", payload=dict)(noop)  # type: ignore[arg-type]


def test_same_name_twice_is_refused() -> None:
    catalog = Catalog()
    catalog.task("t", lane="cpu", payload=Rows)(noop)

    def other(payload: Any, ctx: Any) -> None:
        pass

    with pytest.raises(TaskDeclarationError, match="twice"):
        catalog.task("t", lane="cpu", payload=Rows)(other)


def test_unknown_task_names_the_known_ones() -> None:
    catalog = Catalog()
    catalog.task("a.b", lane="cpu", payload=Rows)(noop)
    with pytest.raises(UnknownTask, match="a.b"):
        catalog.get("nope")


def test_invalid_payload_names_each_field() -> None:
    catalog = Catalog()
    catalog.task("t", lane="cpu", payload=Rows)(noop)
    with pytest.raises(InvalidPayload) as caught:
        catalog.get("t").parse({"rows": [1, "x"]})
    fields = {e["field"] for e in caught.value.errors}
    assert fields == {"payload.rows.1", "payload.title"}
    assert "payload.rows.1" in str(caught.value)


def test_application_catalog_declares_the_first_tasks() -> None:
    import tasks

    names = {spec.name: spec.lane for spec in tasks.catalog()}
    assert names["diag.echo"] == "inline"
    assert names["diag.nap"] == "inline"
    assert names["diag.sleep"] == "cpu"
    assert names["diag.flaky"] == "cpu"
    assert names["reports.pdf"] == "cpu"
    assert names["embeddings.embed"] == "gpu"
