"""Fault plans: their text form, the draw a fault falls on, and which requests are AWS's."""

from __future__ import annotations

import pytest

from infra.local.fault_plan import FaultPlan, FaultSpecError, Rates, identify

SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{}/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abc"
)


def test_a_spec_reads_back_as_the_same_plan() -> None:
    plan = FaultPlan.parse(
        " seed=7; slow_s=0.5; sqs=refuse:0.03,drop:0.03,slow:0.03; dynamodb=drop:0.1; *=slow:0.01"
    )
    assert plan == FaultPlan(
        seed=7,
        rates={
            "sqs": Rates(refuse=0.03, drop=0.03, slow=0.03),
            "dynamodb": Rates(drop=0.1),
            "*": Rates(slow=0.01),
        },
        slow_s=0.5,
    )
    assert FaultPlan.parse(plan.spec()) == plan


@pytest.mark.parametrize("spec", ["", "none", " ; "])
def test_an_empty_spec_faults_nothing(spec: str) -> None:
    assert FaultPlan.parse(spec) == FaultPlan.none()
    assert FaultPlan.none().rates_for("sqs") == Rates()


@pytest.mark.parametrize(
    "spec",
    [
        "sqs",  # no '='
        "seed=x",
        "sqs=refuse",  # no rate
        "sqs=refuse:lots",
        "sqs=explode:0.1",
        "sqs=refuse:0.6,drop:0.6",  # more than every request
        "sqs=refuse:-0.1",
        "slow_s=-1",
    ],
)
def test_a_bad_spec_is_refused_with_the_reason(spec: str) -> None:
    with pytest.raises(FaultSpecError, match="fault plan"):
        FaultPlan.parse(spec)


def test_a_service_without_rates_of_its_own_takes_those_of_star() -> None:
    plan = FaultPlan.parse("sqs=drop:0.5;*=refuse:0.25")
    assert plan.rates_for("sqs") == Rates(drop=0.5)
    assert plan.rates_for("s3") == Rates(refuse=0.25)


def test_a_draw_falls_on_refuse_then_drop_then_slow_then_nothing() -> None:
    rates = Rates(refuse=0.1, drop=0.2, slow=0.3)
    assert [rates.pick(d) for d in (0.0, 0.09, 0.11, 0.29, 0.31, 0.59, 0.61, 0.99)] == [
        "refuse",
        "refuse",
        "drop",
        "drop",
        "slow",
        "slow",
        None,
        None,
    ]
    assert Rates().pick(0.0) is None


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "expected"),
    [
        (  # DynamoDB: SigV4 scope and X-Amz-Target
            "POST",
            "/",
            {
                "authorization": SIGV4.format("dynamodb"),
                "x-amz-target": "DynamoDB_20120810.PutItem",
            },
            b"{}",
            ("dynamodb", "PutItem"),
        ),
        (  # SQS's JSON protocol, unsigned but for its target (kombu signs; this is the fallback)
            "POST",
            "/",
            {"x-amz-target": "AmazonSQS.ReceiveMessage"},
            b"{}",
            ("sqs", "ReceiveMessage"),
        ),
        (  # the query protocol: Action in the form body
            "POST",
            "/",
            {
                "authorization": SIGV4.format("sqs"),
                "content-type": "application/x-www-form-urlencoded; charset=utf-8",
            },
            b"Action=SendMessage&MessageBody=hi",
            ("sqs", "SendMessage"),
        ),
        (  # ... or in the query string
            "GET",
            "/?Action=ListTopics",
            {"authorization": SIGV4.format("sns")},
            b"",
            ("sns", "ListTopics"),
        ),
        (  # S3's REST API: the method
            "PUT",
            "/bucket/key",
            {"authorization": SIGV4.format("s3")},
            b"data",
            ("s3", "PUT"),
        ),
        (  # a presigned URL
            "GET",
            "/bucket/key?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=testing%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0",
            {},
            b"",
            ("s3", "GET"),
        ),
        ("GET", "/moto-api/", {}, b"", None),  # moto's own API, health probes
        ("POST", "/moto-api/reset", {"authorization": "Bearer x"}, b"", None),
    ],
)
def test_identify_names_the_service_and_operation_of_signed_requests_only(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    expected: tuple[str, str] | None,
) -> None:
    assert identify(method, path, headers, body) == expected
