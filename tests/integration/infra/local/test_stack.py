"""The local stack: template.yaml's resources on moto, in-process and over HTTP."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from infra.local.stack import Clients, LocalStack, LocalStackError, provision, wait_for_endpoint
from infra.template import load_template
from offload.aws.store import CALLER_INDEX, CALLER_INFLIGHT_INDEX, FAILED_INDEX, INFLIGHT_INDEX
from offload.settings import QueueLane, Settings
from tests.integration.conftest import moto_endpoint

LANES: tuple[QueueLane, ...] = ("cpu", "gpu")


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto accepts any credentials; fake ones guarantee that nothing reaches real AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _mocked_clients(region: str) -> Clients:
    # mock_aws intercepts only AWS's own hostnames, not a custom endpoint_url: inject clients.
    return Clients(
        sqs=boto3.client("sqs", region_name=region),
        dynamodb=boto3.client("dynamodb", region_name=region),
        s3=boto3.client("s3", region_name=region),
        sns=boto3.client("sns", region_name=region),
        cloudwatch=boto3.client("cloudwatch", region_name=region),
    )


@pytest.fixture(params=["us-east-1", "eu-west-1"])
def mocked(request: pytest.FixtureRequest) -> Iterator[tuple[Settings, Clients]]:
    """Settings and clients of a fresh in-process moto, in two regions (S3 differs in us-east-1)."""
    with mock_aws():
        region: str = request.param
        yield Settings(aws_region=region), _mocked_clients(region)


def _check_alarms(stack: LocalStack, settings: Settings, clients: Clients, topic: str) -> None:
    """Every alarm of the template is on moto as declared, but those of resources whose
    condition does not hold with the parameters' defaults (no GPU fleet, no alarm email)."""
    template = load_template()
    declared = {
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert set(stack.alarms) == declared - {"GpuBacklogWithoutWorkersAlarm"}
    assert {"GpuWorkerGroup", "AlarmEmailSubscription", "GpuBacklogWithoutWorkersAlarm"} <= set(
        stack.skipped
    )
    found = {
        alarm["AlarmName"]: alarm
        for alarm in clients.cloudwatch.describe_alarms(MaxRecords=100)["MetricAlarms"]
    }
    assert set(found) == set(stack.alarms.values())
    assert all(name.startswith(f"{settings.stack_name}-") for name in found)
    assert all(alarm["AlarmActions"] == [topic] for alarm in found.values())
    assert all("First:" in alarm["AlarmDescription"] for alarm in found.values())
    dead_letters = found[f"{settings.stack_name}-gpu-dead-letters"]
    assert dead_letters["Dimensions"] == [{"Name": "QueueName", "Value": "offload-gpu-dlq"}]
    oldest = found[f"{settings.stack_name}-cpu-oldest-message"]
    assert (oldest["Threshold"], oldest["EvaluationPeriods"]) == (600.0, 5)
    # Metric math arrives whole, and functions are named as CloudFormation would.
    failing = found[f"{settings.stack_name}-api-function-failing"]
    queries = {query["Id"]: query for query in failing["Metrics"]}
    assert queries["failing"]["Expression"] == "errors + throttles"
    dimensions = queries["errors"]["MetricStat"]["Metric"]["Dimensions"]
    assert dimensions == [{"Name": "FunctionName", "Value": "offload-ApiFunction"}]


def _check(stack: LocalStack, settings: Settings, clients: Clients) -> None:
    """The provisioned resources are where Settings looks for them, configured as declared."""
    assert stack.queues["CpuQueue"] == settings.queue_url("cpu")
    assert stack.queues["GpuQueue"] == settings.queue_url("gpu")
    assert stack.tables == {
        "JobsTable": settings.table_name(),
        "WorkersTable": settings.workers_table_name(),
    }
    assert stack.buckets == {"ResultsBucket": settings.bucket_name()}
    assert "ApiFunction" in stack.skipped
    alarm_topic = settings.sagemaker_topic_arn("success").replace("sagemaker-success", "alarms")
    assert stack.topics == {
        "SageMakerSuccessTopic": settings.sagemaker_topic_arn("success"),
        "SageMakerErrorTopic": settings.sagemaker_topic_arn("error"),
        "AlarmTopic": alarm_topic,
    }
    _check_alarms(stack, settings, clients, alarm_topic)
    assert stack.queues["CompletionsQueue"] == settings.completions_queue_url()
    # What SageMaker posts to either topic arrives on the completions queue, SNS-wrapped.
    assert clients.sns is not None
    for outcome in ("success", "error"):
        clients.sns.publish(TopicArn=settings.sagemaker_topic_arn(outcome), Message=outcome)
    received = clients.sqs.receive_message(
        QueueUrl=settings.completions_queue_url(), MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    bodies = [json.loads(m["Body"]) for m in received]
    assert sorted(b["Message"] for b in bodies) == ["error", "success"]
    assert all(b["Type"] == "Notification" for b in bodies)

    for lane in LANES:
        attrs = clients.sqs.get_queue_attributes(
            QueueUrl=settings.queue_url(lane), AttributeNames=["All"]
        )["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"])
        dlq_arn = stack.arns[f"{lane.title()}DeadLetterQueue"]
        assert dlq_arn.endswith(f":{settings.aws_account_id}:{settings.stack_name}-{lane}-dlq")
        assert redrive["deadLetterTargetArn"] == dlq_arn
        assert int(redrive["maxReceiveCount"]) == 5
        assert attrs["VisibilityTimeout"] == str(Settings().queue_visibility_timeout_s)
        assert attrs["MessageRetentionPeriod"] == str(14 * 24 * 3600)
        assert attrs["ReceiveMessageWaitTimeSeconds"] == "20"

    table = clients.dynamodb.describe_table(TableName=settings.table_name())["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["job_id"]
    indexes = {
        index["IndexName"]: [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]]
        for index in table["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        CALLER_INDEX: [("caller", "HASH"), ("created_at", "RANGE")],
        INFLIGHT_INDEX: [("inflight", "HASH"), ("updated_at", "RANGE")],
        FAILED_INDEX: [("failed", "HASH"), ("updated_at", "RANGE")],
        CALLER_INFLIGHT_INDEX: [("inflight_caller", "HASH"), ("created_at", "RANGE")],
    }
    ttl = clients.dynamodb.describe_time_to_live(TableName=settings.table_name())
    assert ttl["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }

    bucket = settings.bucket_name()
    block = clients.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = clients.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert sorted(r.get("Filter", {}).get("Prefix", "") for r in rules) == ["jobs/", "sagemaker/"]
    assert all(r["Expiration"] == {"Days": 30} for r in rules)


def test_provision_creates_the_template_resources(mocked: tuple[Settings, Clients]) -> None:
    settings, clients = mocked
    _check(provision(settings, clients=clients), settings, clients)


def test_provision_twice_reuses_what_exists(mocked: tuple[Settings, Clients]) -> None:
    settings, clients = mocked
    first = provision(settings, clients=clients)
    second = provision(settings, clients=clients)
    assert second == first
    _check(second, settings, clients)


def test_provision_updates_a_queue_whose_template_changed(
    mocked: tuple[Settings, Clients],
) -> None:
    settings, clients = mocked
    provision(settings, clients=clients)
    template = load_template()
    template["Resources"]["CpuQueue"]["Properties"]["VisibilityTimeout"] = 60
    provision(settings, template, clients=clients)
    attrs = clients.sqs.get_queue_attributes(
        QueueUrl=settings.queue_url("cpu"), AttributeNames=["VisibilityTimeout"]
    )["Attributes"]
    assert attrs["VisibilityTimeout"] == "60"


def test_provision_refuses_to_run_without_an_endpoint() -> None:
    with pytest.raises(LocalStackError, match="OFFLOAD_AWS_ENDPOINT_URL"):
        provision(Settings())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_wait_for_endpoint_times_out_when_nothing_listens() -> None:
    with pytest.raises(TimeoutError):
        wait_for_endpoint(f"http://127.0.0.1:{_free_port()}", timeout_s=0.3)


@pytest.fixture
def moto_server() -> Iterator[str]:
    """A real moto server on a free local port; its endpoint URL."""
    with moto_endpoint() as url:
        yield url


def test_provision_over_http_gives_the_queue_urls_settings_compute(moto_server: str) -> None:
    wait_for_endpoint(moto_server, timeout_s=10)
    settings = Settings(aws_endpoint_url=moto_server)
    stack = provision(settings)
    # settings.queue_url computes `{endpoint}/{account}/{name}` without an AWS call: moto's
    # server must hand out exactly that form.
    for lane in LANES:
        assert stack.queues[f"{lane.title()}Queue"] == f"{moto_server}/123456789012/offload-{lane}"
    assert provision(settings) == stack
    _check(stack, settings, Clients.for_endpoint(settings))
