"""Fault plans for the local AWS: which faults, how often, per service, from one seed; and
which AWS service and operation a request is (only AWS-signed requests are ever faulted).

No I/O: `infra.local.fault_proxy` applies a plan to the requests it forwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlsplit

Fault = Literal["refuse", "drop", "slow"]
FAULTS: tuple[Fault, ...] = ("refuse", "drop", "slow")
Operation = tuple[str, str]  # (service, operation)

# `Credential=<key>/<date>/<region>/<service>/aws4_request`, in Authorization or a presigned URL.
_SCOPE = re.compile(r"^[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request$")
_SIGNED = re.compile(r"Credential=([^,\s]+)")
_TARGETS = {"DynamoDB_20120810": "dynamodb", "AmazonSQS": "sqs"}


class FaultSpecError(ValueError):
    """A fault plan's text or rates cannot be used."""


@dataclass(frozen=True)
class Rates:
    """The fraction of a service's requests given each fault (together at most 1)."""

    refuse: float = 0.0
    drop: float = 0.0
    slow: float = 0.0

    def __post_init__(self) -> None:
        values = (self.refuse, self.drop, self.slow)
        if any(not 0.0 <= value <= 1.0 for value in values) or sum(values) > 1.0:
            raise FaultSpecError(f"rates must be in [0, 1] and sum to at most 1: {self}")

    def pick(self, draw: float) -> Fault | None:
        """The fault that a uniform draw in [0, 1) falls on, if any."""
        edge = 0.0
        for fault in FAULTS:
            edge += getattr(self, fault)
            if draw < edge:
                return fault
        return None


@dataclass(frozen=True)
class FaultPlan:
    """Which faults, how often, per AWS service (`*`: every other service), from one seed."""

    seed: int = 0
    rates: dict[str, Rates] = field(default_factory=dict)
    slow_s: float = 1.0

    @classmethod
    def none(cls) -> FaultPlan:
        """No faults: every request forwarded as it came."""
        return cls()

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """From `seed=7;slow_s=1.5;sqs=refuse:0.03,drop:0.03;*=slow:0.01` ('' or 'none': none)."""
        seed, slow_s, rates = 0, 1.0, {}
        for part in (p.strip() for p in spec.split(";")):
            if part in ("", "none"):
                continue
            name, sep, value = (s.strip() for s in part.partition("="))
            try:
                if not sep or not name:
                    raise ValueError("expected NAME=VALUE")
                if name == "seed":
                    seed = int(value)
                elif name == "slow_s":
                    slow_s = float(value)
                else:
                    pairs = [item.split(":") for item in value.split(",") if item.strip()]
                    if any(len(pair) != 2 for pair in pairs):
                        raise ValueError("expected FAULT:RATE,...")
                    given = {fault.strip(): float(rate) for fault, rate in pairs}
                    unknown = set(given) - set(FAULTS)
                    if unknown:
                        raise ValueError(f"unknown fault {sorted(unknown)} (use {FAULTS})")
                    rates[name] = Rates(**given)
            except (ValueError, TypeError) as exc:
                raise FaultSpecError(f"fault plan {spec!r}: {part!r}: {exc}") from None
        if slow_s < 0:
            raise FaultSpecError(f"fault plan {spec!r}: slow_s must not be negative")
        return cls(seed=seed, rates=rates, slow_s=slow_s)

    def spec(self) -> str:
        """The plan as `parse` reads it."""
        parts = [f"seed={self.seed}", f"slow_s={self.slow_s:g}"]
        for service, rates in self.rates.items():
            given = [f"{f}:{getattr(rates, f):g}" for f in FAULTS if getattr(rates, f)]
            parts.append(f"{service}={','.join(given)}")
        return ";".join(parts)

    def rates_for(self, service: str) -> Rates:
        """The service's rates, or those of `*`, or none."""
        return self.rates.get(service) or self.rates.get("*") or Rates()


def identify(method: str, path: str, headers: dict[str, str], body: bytes) -> Operation | None:
    """The AWS service and operation of a signed request; None for anything unsigned.

    :param headers: the request's headers, names in lower case.
    """
    url = urlsplit(path)
    query = parse_qs(url.query)
    target = headers.get("x-amz-target", "")
    signed = _SIGNED.search(headers.get("authorization", ""))
    scope = _SCOPE.match(signed.group(1) if signed else query.get("X-Amz-Credential", [""])[0])
    if scope:
        service = scope.group(1)
    elif target.split(".")[0] in _TARGETS:
        service = _TARGETS[target.split(".")[0]]
    else:
        return None
    if target:
        return service, target.rsplit(".", 1)[-1]
    if body and "x-www-form-urlencoded" in headers.get("content-type", ""):
        query.update(parse_qs(body.decode("utf-8", "replace")))
    if "Action" in query:
        return service, query["Action"][0]
    return service, method  # S3's REST API: the method is the operation
