"""Each way a delivery can end is a type of its own, with its own fields required."""

from __future__ import annotations

from typing import Any

import pytest

from offload.core.model import JobError, JobStatus
from offload.runtime.outcomes import (
    Busy,
    Dropped,
    Failed,
    NotDue,
    Parked,
    Retrying,
    Revoked,
    Spilled,
    Succeeded,
)

BOOM = JobError(type="E", message="boom")


@pytest.mark.parametrize("variant", [Succeeded, Retrying, Failed, Revoked, NotDue, Parked])
def test_a_variant_s_own_fields_are_required(variant: Any) -> None:
    # Not taken from the shared answers' defaults (a Retrying with no delay, say).
    with pytest.raises(TypeError):
        variant()


def test_each_variant_answers_the_plain_questions_with_its_own_values_or_none() -> None:
    assert (Succeeded(2).status, Succeeded(2).attempt) == (JobStatus.SUCCESS, 2)
    retrying = Retrying(1, BOOM, 4.0)
    assert (retrying.status, retrying.retry_in_s, retrying.error) == (JobStatus.RETRY, 4.0, BOOM)
    assert (Failed(3, None).status, Revoked(1).status) == (JobStatus.FAILURE, JobStatus.REVOKED)
    parked = Parked(1, "child", 300)
    assert (parked.status, parked.waits_for, parked.wait_s, parked.retry_in_s) == (
        None,
        "child",
        300,
        None,
    )
    assert (NotDue(2, 60).wait_s, NotDue(2, 60).waits_for) == (60, None)
    assert Busy().busy and not Dropped().busy and not Spilled(1).busy
    assert Spilled(1, sent=False).sent is False
