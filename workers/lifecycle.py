"""Draining a worker its auto-scaling group is about to terminate.

The GPU fleet (template.yaml, GpuWorkerGroup) has a lifecycle hook on termination: a
scaled-in instance waits in `Terminating:Wait` until it says it may go, or the hook's
timeout passes. The worker learns of it from the instance metadata service (IMDSv2's
`autoscaling/target-lifecycle-state` turns `Terminated`), then shuts down warm: SIGTERM,
so Celery stops taking messages and lets running jobs finish (those still running after
`OFFLOAD_WORKER_SHUTDOWN_GRACE_S` are handed to other workers by the heartbeat). As the
worker ends, it completes the lifecycle action, and the instance goes.

On when `OFFLOAD_ASG_NAME` and `OFFLOAD_ASG_LIFECYCLE_HOOK` are set (the fleet's user
data sets both); a worker elsewhere never polls the metadata service.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from offload.aws import clients
from offload.settings import Settings

log = logging.getLogger(__name__)

# What the metadata service says of an instance the group is terminating.
TERMINATING = "Terminated"
_TOKEN_TTL_S = "21600"


class Imds:
    """The instance metadata service, version 2 (a session token on every read).

    :param base_url: the service's address (a local stand-in in tests).
    """

    def __init__(self, base_url: str, timeout_s: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        # No proxies: the metadata address is link-local.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str) -> str | None:
        """The value at `/latest/meta-data/<path>`; None when it is not there (yet)."""
        token = self._read(
            urllib.request.Request(
                f"{self.base_url}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL_S},
            )
        )
        if token is None:
            return None
        return self._read(
            urllib.request.Request(
                f"{self.base_url}/latest/meta-data/{path}",
                headers={"X-aws-ec2-metadata-token": token},
            )
        )

    def _read(self, request: urllib.request.Request) -> str | None:
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                body: bytes = response.read()
                return body.decode().strip()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


class Drain:
    """Watches for the group's termination of this instance and drains the worker.

    :param settings: names the group and its hook.
    :param imds: the metadata service.
    :param stop: begins the warm shutdown (SIGTERM to this process by default).
    :param autoscaling: an Auto Scaling client; the process's by default.
    """

    def __init__(
        self,
        settings: Settings,
        imds: Imds | None = None,
        stop: Callable[[], None] | None = None,
        autoscaling: Any = None,
    ) -> None:
        self.settings = settings
        self.imds = imds or Imds(settings.imds_url)
        self.stop = stop or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self._autoscaling = autoscaling
        self.draining = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="offload-drain", daemon=True)

    @staticmethod
    def wanted(settings: Settings) -> bool:
        """Whether this worker belongs to a group with a drain hook."""
        return bool(settings.asg_name and settings.asg_lifecycle_hook)

    def start(self) -> Drain:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop watching (the worker is ending)."""
        self._done.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def check(self) -> bool:
        """One look at the lifecycle state; begins the drain when it is `Terminated`."""
        state = self.imds.get("autoscaling/target-lifecycle-state")
        if state != TERMINATING or self.draining.is_set():
            return False
        log.warning("the auto-scaling group is terminating this instance: draining the worker")
        self.draining.set()
        self.stop()
        return True

    def complete(self) -> bool:
        """Let the group terminate the instance, if it asked to (the worker has drained)."""
        if not self.draining.is_set():
            return False
        instance_id = self.imds.get("instance-id")
        with clients.unavailable_as("Auto Scaling"):
            self.autoscaling.complete_lifecycle_action(
                LifecycleHookName=self.settings.asg_lifecycle_hook,
                AutoScalingGroupName=self.settings.asg_name,
                LifecycleActionResult="CONTINUE",
                InstanceId=instance_id,
            )
        log.info("drained; instance %s may terminate", instance_id)
        return True

    @property
    def autoscaling(self) -> Any:
        if self._autoscaling is None:
            self._autoscaling = clients.autoscaling(self.settings)
        return self._autoscaling

    def _watch(self) -> None:
        while not self._done.wait(self.settings.drain_poll_s):
            try:
                if self.check():
                    return
            except Exception as exc:  # the metadata service hiccups: look again next round
                log.warning("lifecycle state not read: %s", exc)
