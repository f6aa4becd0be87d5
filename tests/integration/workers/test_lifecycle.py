"""A GPU fleet worker drains when its auto-scaling group terminates its instance.

The metadata service is a local IMDSv2 stand-in (token required, as on EC2). moto has no
`complete_lifecycle_action`, so the Auto Scaling client is a recorder of the call.
"""

from __future__ import annotations

from typing import Any

from offload.settings import Settings
from tests.integration.imds import FakeImds
from workers.lifecycle import Drain, Imds


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def complete_lifecycle_action(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {}


def drain_for(imds: FakeImds, stops: list[str], recorder: Recorder) -> Drain:
    settings = Settings(
        asg_name="offload-gpu-workers",
        asg_lifecycle_hook="drain",
        imds_url=imds.url,
        drain_poll_s=0.05,
    )
    return Drain(settings, stop=lambda: stops.append("SIGTERM"), autoscaling=recorder)


def test_a_terminating_instance_drains_then_lets_the_group_terminate_it(imds: FakeImds) -> None:
    stops: list[str] = []
    recorder = Recorder()
    drain = drain_for(imds, stops, recorder)
    assert Drain.wanted(drain.settings)
    assert not drain.check() and stops == []
    # Nothing asked: ending the worker does not complete any lifecycle action.
    assert not drain.complete() and recorder.calls == []

    imds.values["autoscaling/target-lifecycle-state"] = "Terminated"
    assert drain.check() and stops == ["SIGTERM"]
    assert not drain.check() and stops == ["SIGTERM"]  # one shutdown, however often it looks
    assert drain.complete()
    assert recorder.calls == [
        {
            "LifecycleHookName": "drain",
            "AutoScalingGroupName": "offload-gpu-workers",
            "LifecycleActionResult": "CONTINUE",
            "InstanceId": "i-0abc",
        }
    ]


def test_the_watch_thread_begins_the_drain_by_itself(imds: FakeImds) -> None:
    stops: list[str] = []
    drain = drain_for(imds, stops, Recorder()).start()
    try:
        imds.values["autoscaling/target-lifecycle-state"] = "Terminated"
        assert drain.draining.wait(timeout=5)
        assert stops == ["SIGTERM"]
    finally:
        drain.close()


def test_a_state_not_yet_published_is_no_drain(imds: FakeImds) -> None:
    del imds.values["autoscaling/target-lifecycle-state"]  # 404 until the group says
    assert Imds(imds.url).get("autoscaling/target-lifecycle-state") is None
    assert not drain_for(imds, [], Recorder()).check()


def test_workers_outside_a_group_never_poll() -> None:
    assert not Drain.wanted(Settings())
