"""PDF reports: a titled table of rows, laid out with reportlab, stored under the job's prefix."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Annotated, Any, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator

from offload import JobContext, Payload, task
from offload.core.model import utcnow

MAX_COLUMNS = 20
MAX_ROWS = 20_000

Cell = str | int | float | None
ColumnName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ReportRequest(Payload):
    title: str = Field(min_length=1, max_length=200, description="printed at the top of page 1")
    subtitle: str | None = Field(
        default=None, max_length=500, description="printed under the title"
    )
    columns: list[ColumnName] = Field(
        min_length=1,
        max_length=MAX_COLUMNS,
        description="the header row, repeated at the top of every page",
    )
    rows: list[list[Cell]] = Field(
        max_length=MAX_ROWS,
        description="one value per column in each row; null prints as an empty cell",
    )

    @model_validator(mode="after")
    def _rows_match_columns(self) -> Self:
        width = len(self.columns)
        bad = [index for index, row in enumerate(self.rows) if len(row) != width]
        if bad:
            first = bad[0]
            others = f" ({len(bad) - 1} more rows are the wrong length too)" if len(bad) > 1 else ""
            raise ValueError(
                f"rows[{first}] has {len(self.rows[first])} values but there are {width} "
                f"columns{others}"
            )
        return self


class ReportResult(BaseModel):
    uri: str = Field(description="s3:// URI of the PDF")
    pages: int = Field(description="pages in the PDF")
    size_bytes: int = Field(description="size of the PDF")


@dataclass(frozen=True)
class RenderedPdf:
    """A finished PDF and the number of pages the footer counted."""

    data: bytes
    pages: int


@task("reports.pdf", lane="cpu", payload=ReportRequest, max_attempts=3, timeout_s=300)
def pdf(payload: ReportRequest, ctx: JobContext) -> ReportResult:
    """Render the rows as a paginated PDF table and store it as `report.pdf`."""
    ctx.progress(5, f"laying out {len(payload.rows)} rows")
    rendered = render_pdf(payload, generated_at=utcnow(), progress=ctx.progress)
    ctx.progress(90, f"storing {rendered.pages} pages ({len(rendered.data)} bytes)")
    uri = ctx.put_artifact("report.pdf", rendered.data, "application/pdf")
    ctx.progress(100, "done")
    return ReportResult(uri=uri, pages=rendered.pages, size_bytes=len(rendered.data))


# A table row cannot split across pages, so no cell may grow taller than a page: text beyond
# this many wrapped lines is cut, and the cut is marked with an ellipsis.
MAX_CELL_LINES = 8
CELL_PADDING = 3.0
# SimpleDocTemplate's frame keeps this much padding inside each margin.
FRAME_PADDING = 6.0
ELLIPSIS = "\u2026"


def render_pdf(
    request: ReportRequest,
    generated_at: datetime,
    progress: Callable[[float, str], None] | None = None,
) -> RenderedPdf:
    """Lay out the title block and a table whose header row repeats on every page."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table

    ncols = len(request.columns)
    margin = 15 * mm
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4) if ncols > 6 else A4,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin + 5 * mm,  # room for the footer
        title=request.title,
        subject=request.subtitle or "",
        creator="offload reports.pdf",
    )
    frame_width = doc.width - 2 * FRAME_PADDING
    frame_height = doc.height - 2 * FRAME_PADDING
    font_size = 8.0 if ncols <= 10 else 6.5
    line_height = font_size * 1.2  # what Table gives a FONT without a leading
    col_width = frame_width / ncols
    inner_width = col_width - 2 * CELL_PADDING

    # Cells are wrapped here into plain multi-line strings rather than Paragraphs, which
    # measured several times slower (markup parsing, and Table wraps them again); knowing each
    # row's height up front also lets us cut the pages ourselves (below).
    def layout(values: list[str], font: str) -> tuple[list[str], float]:
        cells = [_wrap(text, font, font_size, inner_width) for text in values]
        height = max(len(lines) for lines in cells) * line_height + 2 * CELL_PADDING
        return ["\n".join(lines) for lines in cells], height

    header, header_height = layout(list(request.columns), "Helvetica-Bold")
    rows = [layout([_format(value) for value in row], "Helvetica") for row in request.rows]

    styles = getSampleStyleSheet()
    story: list[Any] = [Paragraph(escape(request.title), styles["Title"])]
    if request.subtitle:
        story.append(Paragraph(escape(request.subtitle), styles["Heading3"]))
    story.append(Spacer(1, 4 * mm))
    title_height = sum(
        f.wrap(frame_width, frame_height)[1] + f.getSpaceBefore() + f.getSpaceAfter() for f in story
    )

    # One Table per page, not one long Table: reportlab re-measures every remaining row at each
    # page break, which is quadratic in the row count. A point of slack absorbs rounding; if a
    # page overflowed anyway, repeatRows would still put the header on its continuation.
    room_per_page = frame_height - header_height - 1.0
    pages: list[list[tuple[list[str], float]]] = [[]]
    room = room_per_page - title_height
    for row in rows:
        if row[1] > room and pages[-1]:
            pages.append([])
            room = room_per_page
        pages[-1].append(row)
        room -= row[1]
    if progress is not None:
        progress(30, f"drawing {len(rows)} rows on {len(pages)} pages")

    style = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", font_size),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", font_size),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("TOPPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("BOTTOMPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde3ea")),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor("#4a5a6a")),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f4f6f8")]),
        ("BOX", (0, 0), (-1, -1), 0.5, colors.HexColor("#4a5a6a")),
    ]
    style.extend(
        ("ALIGN", (i, 1), (i, -1), "RIGHT")
        for i in range(ncols)
        if _is_numeric_column(request.rows, i)
    )
    for number, page in enumerate(pages):
        if number:
            story.append(PageBreak())
        story.append(
            Table(
                [header, *(cells for cells, _ in page)],
                colWidths=[col_width] * ncols,
                rowHeights=[header_height, *(height for _, height in page)],
                repeatRows=1,
                style=style,
            )
        )
    if not rows:
        story.append(Paragraph("No rows.", styles["Italic"]))

    footer = f"Generated {generated_at:%Y-%m-%d %H:%M} UTC"
    counted: list[int] = []
    doc.build(story, canvasmaker=_numbered_canvas(footer, margin, counted.append))
    return RenderedPdf(data=buffer.getvalue(), pages=counted[0])


def _numbered_canvas(footer: str, margin: float, report_pages: Callable[[int], None]) -> Any:
    """A canvas class that holds pages back until the end, so each can say "Page N of M"."""
    from reportlab.pdfgen.canvas import Canvas

    class NumberedCanvas(Canvas):  # type: ignore[misc]  # reportlab ships no type hints
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            report_pages(total)
            for state in self._pages:
                self.__dict__.update(state)
                self._draw_footer(total)
                super().showPage()
            super().save()

        def _draw_footer(self, total: int) -> None:
            width, _ = self._pagesize
            self.saveState()
            self.setFont("Helvetica", 7.5)
            self.setFillColorRGB(0.35, 0.35, 0.35)
            self.drawString(margin, margin, footer)
            self.drawRightString(width - margin, margin, f"Page {self._pageNumber} of {total}")
            self.restoreState()

    return NumberedCanvas


def _format(value: Cell) -> str:
    """The text of a cell: None is empty, numbers keep every digit they came with."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _is_numeric_column(rows: list[list[Cell]], column: int) -> bool:
    """Whether every filled cell of `column` is a number, so it reads best right-aligned."""
    filled = [row[column] for row in rows if row[column] is not None]
    return bool(filled) and all(isinstance(v, int | float) for v in filled)


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """`text` as at most MAX_CELL_LINES lines no wider than `width`, ending in … if cut."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    # No glyph is narrower than about 0.19 em, so anything past this many characters could
    # never be shown; dropping it first keeps a megabyte-long cell from costing seconds.
    budget = MAX_CELL_LINES * (int(width / (size * 0.15)) + 1)
    lines = list(islice(_lines(text[:budget], font, size, width), MAX_CELL_LINES + 1))
    if len(lines) <= MAX_CELL_LINES and len(text) <= budget:
        return lines
    kept = lines[:MAX_CELL_LINES]
    last = kept[-1]
    while last and stringWidth(last + ELLIPSIS, font, size) > width:
        last = last[:-1]
    return [*kept[:-1], last + ELLIPSIS]


def _lines(text: str, font: str, size: float, width: float) -> Iterator[str]:
    """Lines of `text` that fit `width`: broken at spaces, and inside words too wide alone."""
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfbase.pdfmetrics import stringWidth

    for paragraph in text.splitlines() or [""]:
        if stringWidth(paragraph, font, size) <= width:
            yield paragraph  # most cells: one measurement instead of one per word
            continue
        for line in simpleSplit(paragraph, font, size, width) or [""]:
            while len(line) > 1 and stringWidth(line, font, size) > width:
                # The longest prefix that fits, by bisection; at least one character.
                low, high = 1, len(line) - 1
                while low < high:
                    mid = (low + high + 1) // 2
                    if stringWidth(line[:mid], font, size) <= width:
                        low = mid
                    else:
                        high = mid - 1
                yield line[:low]
                line = line[low:]
            yield line
