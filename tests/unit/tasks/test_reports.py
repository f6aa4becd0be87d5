"""`reports.pdf` renders a real multi-page PDF: title, repeated header, "Page N of M"."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, cast

import pytest
from pydantic import ValidationError
from pypdf import PdfReader

from offload import JobContext
from tasks.reports import ReportRequest, ReportResult, pdf

COLUMNS = ["Invoice", "Customer", "Amount", "Note"]


class FakeContext:
    """Just enough of `JobContext` for a task body; artifacts stay in memory, no AWS."""

    def __init__(self) -> None:
        self.job_id = "job-123"
        self.attempt = 1
        self.reports: list[tuple[float, str]] = []
        self.artifacts: dict[str, tuple[bytes, str]] = {}

    def progress(self, percent: float, message: str = "") -> None:
        self.reports.append((percent, message))

    def put_artifact(self, name: str, body: bytes, content_type: str) -> str:
        self.artifacts[name] = (body, content_type)
        return f"s3://results/jobs/{self.job_id}/{name}"


Render = Callable[..., tuple[ReportResult, FakeContext, PdfReader]]


def invoice_rows(count: int) -> list[list[Any]]:
    return [
        [f"INV-{i:05d}", f"Customer {i % 17}", round(i * 12.5, 2), None if i % 3 else "paid"]
        for i in range(count)
    ]


@pytest.fixture
def render() -> Render:
    """Run the task body on a payload; returns its result, the context and the parsed PDF."""

    def run(**overrides: Any) -> tuple[ReportResult, FakeContext, PdfReader]:
        payload = {"title": "Quarterly invoices", "columns": COLUMNS, "rows": invoice_rows(300)}
        payload.update(overrides)
        ctx = FakeContext()
        result = pdf(ReportRequest.model_validate(payload), cast(JobContext, ctx))
        body, _ = ctx.artifacts["report.pdf"]
        return result, ctx, PdfReader(io.BytesIO(body))

    return run


def test_page_count_is_exact_and_more_than_one(render: Render) -> None:
    result, ctx, reader = render()
    body, content_type = ctx.artifacts["report.pdf"]
    assert body.startswith(b"%PDF-")
    assert content_type == "application/pdf"
    assert result.uri == "s3://results/jobs/job-123/report.pdf"
    assert result.size_bytes == len(body)
    assert result.pages > 1
    assert len(reader.pages) == result.pages


def test_title_and_subtitle_are_on_the_first_page(render: Render) -> None:
    _, _, reader = render(subtitle="Generated for the finance team")
    first = reader.pages[0].extract_text()
    assert "Quarterly invoices" in first
    assert "Generated for the finance team" in first


def test_header_row_repeats_on_the_last_page(render: Render) -> None:
    _, _, reader = render()
    last = reader.pages[-1].extract_text()
    for column in COLUMNS:
        assert column in last
    assert "INV-00299" in last
    assert "Quarterly invoices" not in last


def test_every_page_starts_with_the_header_row(render: Render) -> None:
    _, _, reader = render()
    header = "\n".join(COLUMNS)
    for page in reader.pages[1:]:
        assert page.extract_text().startswith(header)


def test_every_page_says_page_n_of_m(render: Render) -> None:
    result, _, reader = render()
    for number, page in enumerate(reader.pages, start=1):
        assert f"Page {number} of {result.pages}" in page.extract_text()


def test_progress_climbs_to_done(render: Render) -> None:
    _, ctx, _ = render()
    percents = [percent for percent, _ in ctx.reports]
    assert len(percents) >= 3
    assert percents == sorted(percents)
    assert ctx.reports[-1] == (100, "done")


def test_no_rows_gives_a_one_page_report(render: Render) -> None:
    result, _, reader = render(rows=[])
    assert result.pages == len(reader.pages) == 1
    assert "No rows." in reader.pages[0].extract_text()


def test_text_too_long_for_a_page_is_cut_rather_than_failing(render: Render) -> None:
    # A table row cannot split across pages; an unbounded cell would stop the layout.
    huge = ["x", "y" * 20_000, 1, "\n".join(["line"] * 2_000)]
    result, _, reader = render(rows=[huge, *invoice_rows(5)])
    text = "".join(page.extract_text() for page in reader.pages)
    assert result.pages == len(reader.pages) == 1
    assert text.count("\u2026") == 2
    assert "INV-00004" in text


def test_pages_come_out_as_planned(render: Render) -> None:
    # The task cuts pages itself; a page that overflowed would add one the plan did not expect.
    rows = [[f"INV-{i}", "word " * (i % 40), i, "\n" * (i % 9)] for i in range(400)]
    result, ctx, _ = render(rows=rows, subtitle="s " * 250)
    plan = next(message for _, message in ctx.reports if message.startswith("drawing"))
    assert plan == f"drawing 400 rows on {result.pages} pages"


def test_a_row_of_the_wrong_length_is_named() -> None:
    rows = invoice_rows(5)
    rows[3] = rows[3][:2]
    with pytest.raises(ValidationError, match=r"rows\[3\] has 2 values but there are 4 columns"):
        ReportRequest(title="t", columns=COLUMNS, rows=rows)


@pytest.mark.parametrize(
    "bad",
    [
        {"title": ""},
        {"title": "x" * 201},
        {"columns": []},
        {"columns": ["a", " "]},
        {"columns": [f"c{i}" for i in range(21)], "rows": []},
        {"rows": [["a", "b", "c", ["nested"]]]},
    ],
)
def test_malformed_requests_are_refused(bad: dict[str, Any]) -> None:
    payload: dict[str, Any] = {"title": "t", "columns": COLUMNS, "rows": []}
    payload.update(bad)
    with pytest.raises(ValidationError):
        ReportRequest.model_validate(payload)
