"""template.yaml's operations side: alarms worth waking for, the GPU fleet, schedules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import tasks
from infra.local.events import SCHEDULED_TIME
from infra.template import load_template

LANES = ("Cpu", "Gpu")


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    found: dict[str, Any] = load_template()["Resources"]
    return found


def alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_every_paging_alarm_says_what_it_means_and_what_to_do_first(
    resources: dict[str, Any],
) -> None:
    found = alarms(resources)
    scaling = {"GpuBacklogWithoutWorkersAlarm"}
    for logical_id, alarm in found.items():
        assert alarm["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), logical_id
        description = alarm["AlarmDescription"]
        assert len(description) <= 1024, logical_id
        if logical_id in scaling:
            assert alarm["AlarmActions"] == [{"Ref": "GpuWakeFromZeroScaling"}]
            continue
        assert "First:" in description, logical_id
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], logical_id


def test_each_lane_has_the_four_alarms_on_its_own_queues(resources: dict[str, Any]) -> None:
    found = alarms(resources)
    for lane in LANES:
        dlq = found[f"{lane}DeadLettersAlarm"]
        assert dlq["Dimensions"][0]["Value"] == {
            "Fn::GetAtt": [f"{lane}DeadLetterQueue", "QueueName"]
        }
        oldest = found[f"{lane}OldestMessageAlarm"]
        assert oldest["MetricName"] == "ApproximateAgeOfOldestMessage"
        assert oldest["Threshold"] == {"Ref": f"{lane}OldestMessageAlarmSeconds"}
        stuck = found[f"{lane}StuckJobsAlarm"]
        assert (stuck["Namespace"], stuck["MetricName"]) == ("offload", "StuckJobs")
        assert stuck["Dimensions"] == [{"Name": "lane", "Value": lane.lower()}]
        assert stuck["TreatMissingData"] == "breaching"  # a sweep that stopped pages too
        silent = {q["Id"]: q for q in found[f"{lane}WorkersSilentAlarm"]["Metrics"]}
        assert silent["silent"]["Expression"] == "IF(waiting > 0 AND received == 0, 1, 0)"
    for name in (
        "ApiErrorRateAlarm",
        "ApiFunctionAlarm",
        "CompletionsFunctionAlarm",
        "SweepFunctionAlarm",
        "SchedulerFunctionAlarm",
        "CompletionsDeadLettersAlarm",
        "LlmBacklogWithoutCapacityAlarm",
    ):
        assert name in found


def test_the_api_is_throttled_by_api_gateway(resources: dict[str, Any]) -> None:
    settings = resources["HttpApi"]["Properties"]["DefaultRouteSettings"]
    assert settings == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottleRate"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"},
    }


def test_the_gpu_fleet_scales_to_zero_on_backlog_and_drains_before_termination(
    resources: dict[str, Any],
) -> None:
    group = resources["GpuWorkerGroup"]
    assert group["Condition"] == "HasGpuFleet"
    props = group["Properties"]
    assert props["MinSize"] == "0"
    (hook,) = props["LifecycleHookSpecificationList"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["DefaultResult"] == "CONTINUE"
    user_data = resources["GpuWorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"][
        "UserData"
    ]["Fn::Base64"]["Fn::Sub"]
    assert "ExecStart=/opt/offload/bin/offload worker --lane gpu" in user_data
    # The worker completes the hook it is told about (workers/lifecycle.py).
    assert f"OFFLOAD_ASG_LIFECYCLE_HOOK={hook['LifecycleHookName']}" in user_data
    assert f"OFFLOAD_ASG_NAME={props['AutoScalingGroupName']['Fn::Sub']}" in user_data
    target = resources["GpuBacklogScaling"]["Properties"]["TargetTrackingConfiguration"]
    per_worker = target["CustomizedMetricSpecification"]["Metrics"][-1]
    assert per_worker["Expression"] == "waiting / workers"
    wake = alarms(resources)["GpuBacklogWithoutWorkersAlarm"]
    assert wake["Metrics"][-1]["Expression"] == "IF(waiting > 0 AND workers == 0, 1, 0)"


def test_the_gpu_worker_service_restarts_always_within_a_start_limit(
    resources: dict[str, Any],
) -> None:
    user_data = resources["GpuWorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"][
        "UserData"
    ]["Fn::Base64"]["Fn::Sub"]
    unit = user_data.split("offload-worker.service <<'UNIT'\n", 1)[1].split("\nUNIT\n", 1)[0]
    sections: dict[str, dict[str, str]] = {}
    for line in unit.splitlines():
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            section[key] = value
    service, head = sections["Service"], sections["Unit"]
    # A worker that exits 0 (a warm shutdown someone began) comes back too...
    assert service["Restart"] == "always"
    # ...but not in a loop: systemd reads the start limit in [Unit] only.
    assert int(head["StartLimitBurst"]) >= 3 and int(head["StartLimitIntervalSec"]) >= 600
    assert "StartLimitBurst" not in service and "StartLimitIntervalSec" not in service
    # A drained worker stays stopped: its start is skipped, and a skip is never restarted.
    check = service["ExecCondition"]
    assert f"cat > {check} <<'CHECK'" in user_data
    assert "target-lifecycle-state" in user_data.split("<<'CHECK'", 1)[1].split("\nCHECK\n")[0]


def test_every_schedule_submits_a_valid_job_of_the_catalog(resources: dict[str, Any]) -> None:
    catalog = tasks.catalog()
    events = resources["SchedulerFunction"]["Properties"]["Events"]
    assert events, "no periodic jobs declared"
    for event in events.values():
        assert event["Type"] == "ScheduleV2"
        raw = event["Properties"]["Input"]
        assert SCHEDULED_TIME in raw  # the idempotency key's part
        job = json.loads(raw.replace(SCHEDULED_TIME, "2026-11-21T00:00:00Z"))
        catalog.get(job["task"]).parse(job["payload"])  # raises if not


def test_the_runbook_has_a_section_for_every_alarm(resources: dict[str, Any]) -> None:
    runbook = (Path(__file__).resolve().parents[2] / "docs" / "runbook.md").read_text()
    headings = set(re.findall(r"^## [^`\n]*`([^`\n]+)`", runbook, flags=re.MULTILINE))
    for logical_id, alarm in alarms(resources).items():
        name = alarm["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-")
        generic = re.sub(r"^(cpu|gpu)-", "<lane>-", name)
        generic = re.sub(
            r"^(api|completions|sweep|scheduler)-function-", "<function>-function-", generic
        )
        assert {name, generic} & headings, f"{logical_id} ({name}) has no runbook section"
