"""The local stack: the queues, tables and buckets of `template.yaml`, created on a moto server.

moto cannot deploy a SAM template, so this reads the template and makes the same resources
through the service APIs; local and deployed configuration come from one file."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from infra.template import TemplateError, conditions, load_template, references, resolve
from offload.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

QUEUE = "AWS::SQS::Queue"
TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
TOPIC = "AWS::SNS::Topic"
SUBSCRIPTION = "AWS::SNS::Subscription"
ALARM = "AWS::CloudWatch::Alarm"


class LocalStackError(RuntimeError):
    """The local stack cannot be provisioned: no local endpoint is configured."""


@dataclass(frozen=True)
class Clients:
    """The boto3 clients that provisioning uses; injectable so tests can run under mock_aws."""

    sqs: SQSClient
    dynamodb: DynamoDBClient
    s3: S3Client
    sns: Any = None  # needed once the template declares topics
    cloudwatch: Any = None  # needed once it declares alarms

    @classmethod
    def for_endpoint(cls, settings: Settings) -> Clients:
        """Clients for `settings.aws_endpoint_url`, which must be set."""
        endpoint = settings.aws_endpoint_url
        if not endpoint:
            # A missing endpoint would make these clients talk to real AWS.
            raise LocalStackError(
                "the local stack needs OFFLOAD_AWS_ENDPOINT_URL (e.g. http://127.0.0.1:5000); "
                "refusing to provision against real AWS"
            )
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=settings.aws_region,
        )
        return cls(
            sqs=session.client("sqs", endpoint_url=endpoint),
            dynamodb=session.client("dynamodb", endpoint_url=endpoint),
            s3=session.client("s3", endpoint_url=endpoint),
            sns=session.client("sns", endpoint_url=endpoint),
            cloudwatch=session.client("cloudwatch", endpoint_url=endpoint),
        )


@dataclass
class LocalStack:
    """What `provision` made, by logical id."""

    queues: dict[str, str] = field(default_factory=dict)  # logical id -> queue URL
    tables: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    buckets: dict[str, str] = field(default_factory=dict)  # logical id -> bucket name
    topics: dict[str, str] = field(default_factory=dict)  # logical id -> topic ARN
    subscriptions: dict[str, str] = field(default_factory=dict)  # logical id -> its ARN
    alarms: dict[str, str] = field(default_factory=dict)  # logical id -> alarm name
    arns: dict[str, str] = field(default_factory=dict)  # logical id -> ARN
    skipped: list[str] = field(default_factory=list)  # logical ids of other resource types


def provision(
    settings: Settings, template: dict[str, Any] | None = None, *, clients: Clients | None = None
) -> LocalStack:
    """Create the template's queues, tables and buckets; existing ones are reused."""
    if clients is None:
        clients = Clients.for_endpoint(settings)
    template = template if template is not None else load_template()
    resources: dict[str, Any] = template.get("Resources") or {}
    refs: dict[str, Any] = dict(_pseudo_parameters(settings))
    refs.update(_parameter_defaults(template))
    holds = conditions(template, refs)
    attrs: dict[tuple[str, str], str] = {}
    stack = LocalStack()
    for logical_id in _creation_order(resources):
        resource = resources[logical_id]
        kind = resource.get("Type")
        creator = _CREATORS.get(kind) if isinstance(kind, str) else None
        if "Condition" in resource and resource["Condition"] not in holds:
            raise TemplateError(f"{logical_id}: unknown condition {resource['Condition']!r}")
        wanted = holds[resource["Condition"]] if "Condition" in resource else True
        if creator is None or not wanted:
            log.debug("local stack: skipping %s (%s)", logical_id, kind)
            stack.skipped.append(logical_id)
            # What refers to it locally (an alarm's dimension naming a function) gets a
            # name in the shape CloudFormation would give it.
            refs[logical_id] = f"{settings.stack_name}-{logical_id}"
            continue
        properties = resolve(resource.get("Properties") or {}, refs, attrs)
        ref, attributes = creator(clients, settings, logical_id, properties)
        refs[logical_id] = ref
        attrs.update({(logical_id, name): value for name, value in attributes.items()})
        stack.arns[logical_id] = attributes["Arn"]
        by_kind = {
            QUEUE: stack.queues,
            TABLE: stack.tables,
            BUCKET: stack.buckets,
            TOPIC: stack.topics,
            SUBSCRIPTION: stack.subscriptions,
            ALARM: stack.alarms,
        }
        by_kind[kind][logical_id] = ref
        log.debug("local stack: %s (%s) is %s", logical_id, kind, ref)
    return stack


def wait_for_endpoint(url: str, timeout_s: float) -> None:
    """Return once a server answers HTTP at `url`; `TimeoutError` after `timeout_s`."""
    probe = url.rstrip("/") + "/moto-api/"
    # No proxies: a local endpoint must not be sent to a corporate HTTP proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            with opener.open(probe, timeout=max(0.1, min(1.0, remaining))):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no HTTP server answered at {url} within {timeout_s:g} s")
        time.sleep(0.1)


# -- ordering ---------------------------------------------------------------------------------


def _pseudo_parameters(settings: Settings) -> dict[str, str]:
    return {
        "AWS::StackName": settings.stack_name,
        "AWS::AccountId": settings.aws_account_id,
        "AWS::Region": settings.aws_region,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }


def _parameter_defaults(template: dict[str, Any]) -> dict[str, Any]:
    parameters: dict[str, Any] = template.get("Parameters") or {}
    defaults: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if "Default" not in parameter:
            continue
        value = str(parameter["Default"])
        # A list parameter refers to a list (`!Join ["", !Ref Subnets]`).
        is_list = str(parameter.get("Type", "")).startswith(("CommaDelimitedList", "List<"))
        defaults[name] = value.split(",") if is_list else value
    return defaults


def _creation_order(resources: dict[str, Any]) -> list[str]:
    """Logical ids with every referenced resource first (a queue's redrive needs its DLQ's ARN)."""
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends_on = resource.get("DependsOn") or []
        needs = references(resource.get("Properties") or {})
        needs |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
        graph[logical_id] = {name for name in needs if name in resources}
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise TemplateError(f"circular references between resources: {exc.args[1]}") from exc


# -- SQS --------------------------------------------------------------------------------------


def _attribute(value: Any) -> str:
    # SQS attributes are all strings: policies as JSON, booleans lower-case.
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _queue(
    clients: Clients, settings: Settings, logical_id: str, props: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    props = dict(props)
    name = props.pop("QueueName", None) or f"{settings.stack_name}-{logical_id}"
    tags = {t["Key"]: str(t["Value"]) for t in props.pop("Tags", None) or []}
    # Keys are the template's property names, which are SQS's attribute names.
    attributes: dict[Any, str] = {key: _attribute(value) for key, value in props.items()}
    try:
        created = clients.sqs.create_queue(QueueName=name, Attributes=attributes, tags=tags)
        url = created["QueueUrl"]
    except ClientError as exc:
        if _code(exc) not in {"QueueAlreadyExists", "QueueNameExists"}:
            raise
        # The template changed since the queue was made: update it in place, as CloudFormation
        # would. FifoQueue cannot be changed after creation.
        url = clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes.pop("FifoQueue", None)
        clients.sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    found = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    arn = found["Attributes"]["QueueArn"]
    return url, {"Arn": arn, "QueueName": name, "QueueUrl": url}


# -- DynamoDB ---------------------------------------------------------------------------------


def _enabled(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _table(
    clients: Clients, settings: Settings, logical_id: str, props: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    ddb = clients.dynamodb
    name = props.get("TableName") or f"{settings.stack_name}-{logical_id}"
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput"):
        if key in props:
            kwargs[key] = props[key]
    if "StreamSpecification" in props:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if props.get("Tags"):
        kwargs["Tags"] = props["Tags"]
    try:
        ddb.create_table(**kwargs)
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise
        # Reused as is: changing keys or indexes of a table with data is not a local concern.
        log.debug("local stack: table %s exists, reusing it", name)
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})

    ttl = props.get("TimeToLiveSpecification")
    if ttl and _enabled(ttl.get("Enabled")):
        current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        # Enabling TTL twice is an error on AWS: only ask when it is off.
        if current.get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}:
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and _enabled(pitr.get("PointInTimeRecoveryEnabled")):
        ddb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )

    table = ddb.describe_table(TableName=name)["Table"]
    attributes = {"Arn": table["TableArn"]}
    if "LatestStreamArn" in table:
        attributes["StreamArn"] = table["LatestStreamArn"]
    return name, attributes


# -- S3 ---------------------------------------------------------------------------------------


def _bucket(
    clients: Clients, settings: Settings, logical_id: str, props: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    s3 = clients.s3
    # Bucket names are lower-case; logical ids are not.
    name = props.get("BucketName") or f"{settings.stack_name}-{logical_id}".lower()
    kwargs: dict[str, Any] = {"Bucket": name}
    if settings.aws_region != "us-east-1":
        # us-east-1 refuses an explicit location constraint; every other region needs one.
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.aws_region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if _code(exc) != "BucketAlreadyOwnedByYou":
            raise
    block = props.get("PublicAccessBlockConfiguration")
    if block:
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": _enabled(block.get("BlockPublicAcls")),
                "IgnorePublicAcls": _enabled(block.get("IgnorePublicAcls")),
                "BlockPublicPolicy": _enabled(block.get("BlockPublicPolicy")),
                "RestrictPublicBuckets": _enabled(block.get("RestrictPublicBuckets")),
            },
        )
    lifecycle = props.get("LifecycleConfiguration") or {}
    rules: list[Any] = [_lifecycle_rule(rule) for rule in lifecycle.get("Rules", [])]
    if rules:
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    return name, {
        "Arn": f"arn:aws:s3:::{name}",
        "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{settings.aws_region}.amazonaws.com",
    }


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape (expirations only)."""
    out: dict[str, Any] = {
        "Status": rule.get("Status", "Enabled"),
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "Id" in rule:
        out["ID"] = rule["Id"]
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(days)}
    # Transitions and tag filters change nothing on moto: not mirrored.
    return out


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# A creator makes (or finds) one resource and returns its Ref value and its GetAtt values.
# -- SNS ----------------------------------------------------------------------------------------


def _sns(clients: Clients) -> Any:
    if clients.sns is None:
        raise LocalStackError("the template declares SNS resources: provision with an SNS client")
    return clients.sns


def _topic(
    clients: Clients, settings: Settings, logical_id: str, props: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    name = props.get("TopicName") or f"{settings.stack_name}-{logical_id}"
    arn: str = _sns(clients).create_topic(Name=name)["TopicArn"]  # idempotent by name
    return arn, {"Arn": arn, "TopicArn": arn, "TopicName": name}


def _subscription(
    clients: Clients, settings: Settings, logical_id: str, props: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    attributes = {
        key: _attribute(props[key])
        for key in ("RawMessageDelivery", "FilterPolicy", "RedrivePolicy")
        if key in props
    }
    sns = _sns(clients)
    existing = sns.list_subscriptions_by_topic(TopicArn=props["TopicArn"])["Subscriptions"]
    for found in existing:
        if (found["Protocol"], found["Endpoint"]) == (props["Protocol"], props["Endpoint"]):
            return found["SubscriptionArn"], {"Arn": found["SubscriptionArn"]}
    arn: str = sns.subscribe(
        TopicArn=props["TopicArn"],
        Protocol=props["Protocol"],
        Endpoint=props["Endpoint"],
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return arn, {"Arn": arn}


# -- CloudWatch ---------------------------------------------------------------------------------

# Template property -> put_metric_alarm argument, for those passed as they are.
_ALARM_ARGS = {
    "AlarmName": "AlarmName",
    "AlarmDescription": "AlarmDescription",
    "ActionsEnabled": "ActionsEnabled",
    "AlarmActions": "AlarmActions",
    "OKActions": "OKActions",
    "InsufficientDataActions": "InsufficientDataActions",
    "Namespace": "Namespace",
    "MetricName": "MetricName",
    "Dimensions": "Dimensions",
    "Statistic": "Statistic",
    "ExtendedStatistic": "ExtendedStatistic",
    "Unit": "Unit",
    "ComparisonOperator": "ComparisonOperator",
    "TreatMissingData": "TreatMissingData",
    "Metrics": "Metrics",
}


def _alarm(
    clients: Clients, settings: Settings, logical_id: str, props: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    if clients.cloudwatch is None:
        raise LocalStackError("the template declares alarms: provision with a CloudWatch client")
    kwargs: dict[str, Any] = {arg: props[key] for key, arg in _ALARM_ARGS.items() if key in props}
    kwargs.setdefault("AlarmName", f"{settings.stack_name}-{logical_id}")
    # Parameters arrive as strings; the API wants numbers.
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if key in props:
            kwargs[key] = int(props[key])
    kwargs["Threshold"] = float(props.get("Threshold", 0))
    for query in kwargs.get("Metrics", []):
        stat = query.get("MetricStat")
        if stat and "Period" in stat:
            stat["Period"] = int(stat["Period"])
    clients.cloudwatch.put_metric_alarm(**kwargs)  # creates or replaces, by name
    name: str = kwargs["AlarmName"]
    arn = f"arn:aws:cloudwatch:{settings.aws_region}:{settings.aws_account_id}:alarm:{name}"
    return name, {"Arn": arn}


_CREATORS: dict[
    str, Callable[[Clients, Settings, str, dict[str, Any]], tuple[str, dict[str, str]]]
] = {
    QUEUE: _queue,
    TABLE: _table,
    BUCKET: _bucket,
    TOPIC: _topic,
    SUBSCRIPTION: _subscription,
    ALARM: _alarm,
}
