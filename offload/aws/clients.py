"""boto3 clients made once per process, and AWS failures translated into `AwsUnavailable`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from offload.errors import AwsUnavailable
from offload.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# Error codes that mean "try again later", not "your request is wrong".
_UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestThrottled",
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchBucket",
    }
)


def _client(service: str, settings: Settings) -> Any:
    # Imported here: boto3 costs ~120 ms, and `offload` must stay cheap to import.
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=settings.aws_region,
        connect_timeout=settings.aws_timeout_s,
        read_timeout=settings.aws_timeout_s,
        retries={"max_attempts": 3, "mode": "standard"},
        # Presigned URLs (large results) signed with SigV4: SigV2 is refused in newer
        # regions and cannot carry a session token's expiry properly.
        signature_version="s3v4" if service == "s3" else None,
    )
    kwargs: dict[str, Any] = {"config": config}
    if settings.aws_endpoint_url:
        # moto accepts any credentials; fixed ones keep a bare shell working.
        kwargs.update(
            endpoint_url=settings.aws_endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    return boto3.session.Session().client(service, **kwargs)  # type: ignore[call-overload]


@lru_cache(maxsize=8)
def _cached(service: str, settings: Settings) -> Any:
    return _client(service, settings)


def dynamodb(settings: Settings | None = None) -> DynamoDBClient:
    """The DynamoDB client for `settings` (the process settings by default)."""
    client: DynamoDBClient = _cached("dynamodb", settings or get_settings())
    return client


def sqs(settings: Settings | None = None) -> SQSClient:
    """The SQS client for `settings`."""
    client: SQSClient = _cached("sqs", settings or get_settings())
    return client


def s3(settings: Settings | None = None) -> S3Client:
    """The S3 client for `settings`."""
    client: S3Client = _cached("s3", settings or get_settings())
    return client


def sagemaker_runtime(settings: Settings | None = None) -> Any:
    """The SageMaker runtime client (boto3's, never the sagemaker SDK)."""
    return _cached("sagemaker-runtime", settings or get_settings())


def sns(settings: Settings | None = None) -> Any:
    """The SNS client for `settings`."""
    return _cached("sns", settings or get_settings())


def autoscaling(settings: Settings | None = None) -> Any:
    """The process's cached Auto Scaling client (a GPU worker completing its drain)."""
    return _cached("autoscaling", settings or get_settings())


def cloudwatch(settings: Settings | None = None) -> Any:
    """The process's cached CloudWatch client (the alarm review)."""
    return _cached("cloudwatch", settings or get_settings())


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an `s3://bucket/key` URI."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_object(settings: Settings, bucket: str, key: str) -> bytes | None:
    """An S3 object's bytes; None when there is no such object."""
    with unavailable_as("S3"):
        try:
            response = s3(settings).get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        body: bytes = response["Body"].read()
    return body


def clear_clients() -> None:
    """Forget cached clients (tests switch endpoints between cases)."""
    _cached.cache_clear()


def _status_of(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return f"HTTP {response.get('ResponseMetadata', {}).get('HTTPStatusCode', '?')}"


def _transient_status(exc: BaseException) -> bool:
    """A 5xx or 429 answer, whatever its body says: a proxy or load balancer in the way
    answers with codes botocore cannot name (an empty body reads as code '503')."""
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return isinstance(status, int) and (status >= 500 or status == 429)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore `ClientError`, or '' for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


@contextmanager
def unavailable_as(service: str) -> Iterator[None]:
    """Turn connection failures and throttling into `AwsUnavailable`; other errors pass."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        yield
    except ClientError as exc:
        if error_code(exc) in _UNAVAILABLE_CODES or _transient_status(exc):
            raise AwsUnavailable(service, error_code(exc) or _status_of(exc)) from exc
        raise
    except (BotoConnectionError, HTTPClientError) as exc:
        # Unreachable, timed out or cut off; a bad parameter or missing credentials is a bug
        # or a misconfiguration, not an outage, and is left to surface as itself.
        raise AwsUnavailable(service, type(exc).__name__) from exc
