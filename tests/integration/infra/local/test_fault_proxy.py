"""The fault proxy in front of a real moto server, seen by boto3 clients that do not retry."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from infra.local.fault_proxy import FaultPlan, FaultProxy
from tests.integration.conftest import moto_endpoint

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

ONE_TRY = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30)
SIGV4_SQS = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_url) as started:
        yield started


def sqs_at(endpoint: str, config: Config = ONE_TRY) -> SQSClient:
    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", config=config)


def dynamodb_at(endpoint: str) -> DynamoDBClient:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", config=ONE_TRY)


def s3_at(endpoint: str) -> S3Client:
    # SigV4 as offload's own clients sign (presigned URLs too: SigV2's are not recognised).
    config = ONE_TRY.merge(Config(signature_version="s3v4"))
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


def queue(moto_url: str) -> str:
    url: str = sqs_at(moto_url).create_queue(QueueName=f"q-{uuid.uuid4().hex}")["QueueUrl"]
    return url


def messages(moto_url: str, url: str) -> list[str]:
    out = sqs_at(moto_url).receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [m["Body"] for m in out.get("Messages", [])]


def table(moto_url: str) -> str:
    name = f"t-{uuid.uuid4().hex}"
    dynamodb_at(moto_url).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def item_exists(moto_url: str, name: str) -> bool:
    got = dynamodb_at(moto_url).get_item(TableName=name, Key={"pk": {"S": "a"}})
    return "Item" in got


def put_item(endpoint: str, name: str) -> None:
    dynamodb_at(endpoint).put_item(TableName=name, Item={"pk": {"S": "a"}})


def test_refused_requests_get_aws_503s_and_are_not_carried_out(
    proxy: FaultProxy, moto_url: str
) -> None:
    proxy.set_plan(FaultPlan.parse("*=refuse:1"))
    url, name, bucket = queue(moto_url), table(moto_url), f"b-{uuid.uuid4().hex}"
    s3_at(moto_url).create_bucket(Bucket=bucket)
    attempts: list[Callable[[], object]] = [
        lambda: sqs_at(proxy.url).send_message(QueueUrl=url, MessageBody="m"),
        lambda: put_item(proxy.url, name),
        lambda: s3_at(proxy.url).put_object(Bucket=bucket, Key="k", Body=b"x"),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as caught:
            attempt()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert messages(moto_url, url) == []
    assert not item_exists(moto_url, name)
    assert "Contents" not in s3_at(moto_url).list_objects_v2(Bucket=bucket)
    counts = proxy.counts()
    assert counts.forwarded == 0
    assert counts.faults == {
        ("sqs", "SendMessage", "refuse"): 1,
        ("dynamodb", "PutItem", "refuse"): 1,
        ("s3", "PUT", "refuse"): 1,
    }


def test_dropped_requests_are_carried_out_but_their_answer_is_lost(
    proxy: FaultProxy, moto_url: str
) -> None:
    proxy.set_plan(FaultPlan.parse("sqs=drop:1;dynamodb=drop:1"))
    url, name = queue(moto_url), table(moto_url)
    with pytest.raises(ConnectionClosedError):
        sqs_at(proxy.url).send_message(QueueUrl=url, MessageBody="landed")
    with pytest.raises(ConnectionClosedError):
        put_item(proxy.url, name)
    assert messages(moto_url, url) == ["landed"]
    assert item_exists(moto_url, name)
    assert proxy.counts().total("drop") == 2
    assert proxy.counts().forwarded == 2


def test_a_retrying_client_repeats_a_dropped_send(proxy: FaultProxy, moto_url: str) -> None:
    """What the SDK's own retries do with a lost answer: the message is sent again."""
    proxy.set_plan(FaultPlan.parse("sqs=drop:1"))
    url = queue(moto_url)
    retrying = sqs_at(proxy.url, Config(retries={"mode": "standard", "total_max_attempts": 2}))
    with pytest.raises(ConnectionClosedError):
        retrying.send_message(QueueUrl=url, MessageBody="twice")
    assert messages(moto_url, url) == ["twice", "twice"]


def test_slow_requests_wait_then_go_through(proxy: FaultProxy, moto_url: str) -> None:
    proxy.set_plan(FaultPlan.parse("slow_s=0.5;sqs=slow:1"))
    url = queue(moto_url)
    sqs = sqs_at(proxy.url)
    started = time.monotonic()
    sqs.send_message(QueueUrl=url, MessageBody="late")
    assert 0.5 <= time.monotonic() - started < 3
    assert messages(moto_url, url) == ["late"]
    assert proxy.counts().faults == {("sqs", "SendMessage", "slow"): 1}


def test_rates_of_zero_fault_nothing(proxy: FaultProxy, moto_url: str) -> None:
    proxy.set_plan(FaultPlan.parse("seed=1;sqs=refuse:0,drop:0,slow:0;*=refuse:0"))
    url = queue(moto_url)
    sqs = sqs_at(proxy.url)
    for n in range(20):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
    counts = proxy.counts()
    assert counts.total() == 0
    assert counts.forwarded == counts.requests[("sqs", "SendMessage")] == 20


def test_the_same_seed_gives_the_same_faults(proxy: FaultProxy, moto_url: str) -> None:
    name = table(moto_url)

    def outcomes(seed: int) -> list[str]:
        proxy.set_plan(FaultPlan.parse(f"seed={seed};dynamodb=refuse:0.5"))
        seen = []
        for _ in range(16):
            try:
                put_item(proxy.url, name)
                seen.append("ok")
            except ClientError:
                seen.append("refused")
        return seen

    first = outcomes(7)
    assert proxy.counts().total("refuse") == first.count("refused")
    assert "ok" in first and "refused" in first
    assert outcomes(7) == first  # a new plan starts each service's draws again
    assert outcomes(8) != first


def test_counts_and_the_plan_over_http(proxy: FaultProxy, moto_url: str) -> None:
    url = queue(moto_url)
    request = urllib.request.Request(
        f"{proxy.url}/_faults/plan", data=b"seed=3;sqs=refuse:1", method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["plan"] == "seed=3;slow_s=1;sqs=refuse:1"
    with pytest.raises(ClientError):
        sqs_at(proxy.url).send_message(QueueUrl=url, MessageBody="m")
    with urllib.request.urlopen(f"{proxy.url}/_faults/counts", timeout=5) as response:
        counts = json.loads(response.read())
    assert counts == {
        "forwarded": 0,
        "requests": {"sqs:SendMessage": 1},
        "faults": {"sqs:SendMessage:refuse": 1},
        "plan": "seed=3;slow_s=1;sqs=refuse:1",
    }
    bad = urllib.request.Request(f"{proxy.url}/_faults/plan", data=b"sqs=boom:1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=5)
    assert refused.value.code == 400
    proxy.set_plan(FaultPlan.none())  # stop faulting: everything goes through again
    sqs_at(proxy.url).send_message(QueueUrl=url, MessageBody="now")
    assert messages(moto_url, url) == ["now"]


def test_unsigned_requests_are_never_faulted(proxy: FaultProxy) -> None:
    proxy.set_plan(FaultPlan.parse("*=refuse:1"))
    with urllib.request.urlopen(f"{proxy.url}/moto-api/", timeout=5) as response:
        assert response.status == 200
    counts = proxy.counts()
    assert counts.requests == {} and counts.forwarded == 1


def test_s3_objects_and_presigned_urls_pass_whole(proxy: FaultProxy, moto_url: str) -> None:
    bucket, data = f"b-{uuid.uuid4().hex}", bytes(range(256)) * 4096  # 1 MiB
    s3_at(moto_url).create_bucket(Bucket=bucket)
    s3 = s3_at(proxy.url)
    s3.put_object(Bucket=bucket, Key="k", Body=data)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == len(data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == data
    assert proxy.counts().requests == {("s3", "PUT"): 1, ("s3", "GET"): 2, ("s3", "HEAD"): 1}


def test_a_chunked_body_is_forwarded_whole_on_a_kept_alive_connection(
    proxy: FaultProxy, moto_url: str
) -> None:
    url = queue(moto_url)
    form = f"Action=SendMessage&QueueUrl={url}&MessageBody=chunked".encode()
    connection = http.client.HTTPConnection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))
    headers = {
        "Authorization": SIGV4_SQS,
        "Content-Type": "application/x-www-form-urlencoded",
        "Transfer-Encoding": "chunked",
    }
    for _ in range(2):  # the second request reuses the connection
        connection.request(
            "POST", "/", body=iter([form[:10], form[10:]]), headers=headers, encode_chunked=True
        )
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
    connection.close()
    assert messages(moto_url, url) == ["chunked", "chunked"]
    assert proxy.counts().requests == {("sqs", "SendMessage"): 2}


def test_the_host_header_reaches_moto_as_sent(proxy: FaultProxy) -> None:
    url = sqs_at(proxy.url).create_queue(QueueName=f"q-{uuid.uuid4().hex}")["QueueUrl"]
    assert url.startswith(f"{proxy.url}/")  # moto builds queue URLs from the Host header


def test_a_stopped_proxy_hangs_up_on_kept_alive_clients(moto_url: str) -> None:
    proxy = FaultProxy(moto_url).start()
    sqs = sqs_at(proxy.url)
    sqs.list_queues()  # a kept-alive connection
    proxy.stop()
    proxy.stop()
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        sqs.list_queues()


def test_long_polls_are_served_concurrently(proxy: FaultProxy, moto_url: str) -> None:
    url = queue(moto_url)
    sqs = sqs_at(proxy.url)
    got: list[int] = []

    def poll() -> None:
        out = sqs_at(proxy.url).receive_message(QueueUrl=url, WaitTimeSeconds=2)
        got.append(len(out.get("Messages", [])))

    started = time.monotonic()
    polls = [threading.Thread(target=poll) for _ in range(4)]
    for thread in polls:
        thread.start()
    time.sleep(0.5)
    sqs.send_message(QueueUrl=url, MessageBody="one")  # served while four polls wait
    for thread in polls:
        thread.join()
    assert time.monotonic() - started < 4  # side by side, not one after another
    assert sorted(got) == [0, 0, 0, 1]
