"""The GPU worker service's start check (template.yaml's user data), run by `sh` against a
local IMDSv2 stand-in: a start is skipped only on an instance its group is terminating."""

from __future__ import annotations

import subprocess

import pytest

from infra.template import load_template
from tests.integration.imds import FakeImds


def start_check() -> str:
    user_data: str = load_template()["Resources"]["GpuWorkerLaunchTemplate"]["Properties"][
        "LaunchTemplateData"
    ]["UserData"]["Fn::Base64"]["Fn::Sub"]
    return user_data.split("<<'CHECK'\n", 1)[1].split("\nCHECK\n", 1)[0]


def run(script: str, imds_url: str) -> int:
    local = script.replace("http://169.254.169.254", imds_url)
    return subprocess.run(["sh", "-c", local], timeout=30).returncode


@pytest.mark.parametrize(("state", "status"), [("InService", 0), ("Terminated", 1)])
def test_a_start_is_skipped_only_when_the_group_terminates_the_instance(
    imds: FakeImds, state: str, status: int
) -> None:
    imds.values["autoscaling/target-lifecycle-state"] = state
    assert run(start_check(), imds.url) == status


def test_a_state_not_published_or_unreadable_lets_the_worker_start(imds: FakeImds) -> None:
    del imds.values["autoscaling/target-lifecycle-state"]  # 404: not in a group (yet)
    assert run(start_check(), imds.url) == 0
    assert run(start_check(), "http://127.0.0.1:9") == 0  # nothing answers
