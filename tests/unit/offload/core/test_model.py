from __future__ import annotations

from datetime import UTC, datetime

import pytest

from offload.core.model import ALLOWED, TERMINAL, Job, JobStatus, can_move, isoformat, sources_of

S = JobStatus


DESIGN_MOVES = {
    (S.PENDING, S.STARTED),
    (S.PENDING, S.REVOKED),
    (S.STARTED, S.SUCCESS),
    (S.STARTED, S.RETRY),
    (S.STARTED, S.FAILURE),
    (S.STARTED, S.REVOKED),
    (S.RETRY, S.STARTED),
    (S.RETRY, S.FAILURE),
    (S.RETRY, S.REVOKED),
}


@pytest.mark.parametrize(("source", "target"), sorted(DESIGN_MOVES))
def test_design_moves_are_allowed(source: JobStatus, target: JobStatus) -> None:
    assert can_move(source, target)


def test_every_other_move_is_refused() -> None:
    for source in S:
        for target in S:
            assert can_move(source, target) == ((source, target) in DESIGN_MOVES), (source, target)


def test_terminal_statuses_go_nowhere() -> None:
    assert TERMINAL == {S.SUCCESS, S.FAILURE, S.REVOKED}
    for status in TERMINAL:
        assert status.terminal
        assert ALLOWED[status] == frozenset()
    assert not S.RETRY.terminal


def test_sources_of_is_the_inverse_of_allowed() -> None:
    assert sources_of(S.STARTED) == {S.PENDING, S.RETRY}
    assert sources_of(S.FAILURE) == {S.STARTED, S.RETRY}
    assert sources_of(S.REVOKED) == {S.PENDING, S.STARTED, S.RETRY}
    assert sources_of(S.PENDING) == frozenset()


def test_view_has_the_contract_fields_and_hides_internals() -> None:
    now = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
    job = Job(
        job_id="j1",
        task="diag.echo",
        lane="inline",
        status=S.PENDING,
        created_at=now,
        updated_at=now,
        caller="alice",
        payload={"secret": 1},
    )
    view = job.view()
    for name in (
        "job_id",
        "task",
        "lane",
        "status",
        "attempts",
        "progress",
        "result",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    ):
        assert name in view
    assert "caller" not in view and "payload" not in view
    assert view["status"] == "PENDING"
    assert view["created_at"] == "2026-11-21T10:00:00.123456Z"


def test_isoformat_is_fixed_width_utc() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert isoformat(moment) == "2026-01-02T03:04:05.000000Z"
