"""`offload review` as an on-call runs it, against the running local stack (moto server)."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3
import pytest

from infra.local.dev import LocalSystem

pytestmark = pytest.mark.e2e


def test_review_reads_the_local_stacks_alarms_queues_and_jobs(system: LocalSystem) -> None:
    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=system.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = "offload-cpu-oldest-message"
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="e2e: forced")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "infra.ops.cli", "review", "--json"],
            env=system.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        # The system is shared by the session: leave the alarm as it was.
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="e2e: reset")
    assert done.returncode == 1, done.stderr
    review = json.loads(done.stdout)
    assert review["alarms"][0]["name"] == name
    assert "First:" in review["alarms"][0]["guidance"]
    # Every alarm make dev provisioned from template.yaml is there.
    assert review["alarms_ok"] >= 14
    assert {q["lane"] for q in review["queues"]} == {"cpu", "gpu"}
    # The system's worker of each lane beats into the workers table.
    live = {lane["lane"]: lane["live"] for lane in review["workers"]}
    assert live["cpu"] >= 1 and live["gpu"] >= 1, review["workers"]
    assert review["problems"] == []
