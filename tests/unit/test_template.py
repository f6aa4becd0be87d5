"""template.yaml and its reader: short tags, the resolver, and the declared resources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

from infra.template import TemplateError, load_template, references, resolve
from offload.aws.store import CALLER_INDEX, CALLER_INFLIGHT_INDEX, FAILED_INDEX, INFLIGHT_INDEX
from offload.core.catalog import INLINE_MAX_TIMEOUT_S
from offload.settings import Settings

TAGS_YAML = """
Resources:
  R:
    Type: Test
    Properties:
      ref: !Ref Thing
      sub: !Sub "${AWS::StackName}-x"
      sub_vars: !Sub ["${A}-b", {A: !Ref Thing}]
      getatt_dotted: !GetAtt Queue.Arn
      getatt_nested_dot: !GetAtt Db.Endpoint.Address
      getatt_list: !GetAtt [Queue, Arn]
      join: !Join [":", [a, b]]
      select: !Select [0, [a, b]]
      if: !If [IsProd, 1, 2]
      equals: !Equals [a, b]
      not: !Not [!Condition IsProd]
      split: !Split [",", "a,b"]
      find_in_map: !FindInMap [Map, Key, Value]
      import_value: !ImportValue Exported
      base64: !Base64 text
      get_azs: !GetAZs ""
      condition: !Condition IsProd
      and: !And [!Condition A, !Condition B]
      or: !Or [!Condition A, !Condition B]
      cidr: !Cidr ["10.0.0.0/16", 4, 8]
      date: 2010-09-09
"""


def _load(tmp_path: Path, text: str) -> dict[str, Any]:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return load_template(path)


def test_loader_turns_every_short_tag_into_its_long_form(tmp_path: Path) -> None:
    props = _load(tmp_path, TAGS_YAML)["Resources"]["R"]["Properties"]
    assert props == {
        "ref": {"Ref": "Thing"},
        "sub": {"Fn::Sub": "${AWS::StackName}-x"},
        "sub_vars": {"Fn::Sub": ["${A}-b", {"A": {"Ref": "Thing"}}]},
        "getatt_dotted": {"Fn::GetAtt": ["Queue", "Arn"]},
        "getatt_nested_dot": {"Fn::GetAtt": ["Db", "Endpoint.Address"]},
        "getatt_list": {"Fn::GetAtt": ["Queue", "Arn"]},
        "join": {"Fn::Join": [":", ["a", "b"]]},
        "select": {"Fn::Select": [0, ["a", "b"]]},
        "if": {"Fn::If": ["IsProd", 1, 2]},
        "equals": {"Fn::Equals": ["a", "b"]},
        "not": {"Fn::Not": [{"Condition": "IsProd"}]},
        "split": {"Fn::Split": [",", "a,b"]},
        "find_in_map": {"Fn::FindInMap": ["Map", "Key", "Value"]},
        "import_value": {"Fn::ImportValue": "Exported"},
        "base64": {"Fn::Base64": "text"},
        "get_azs": {"Fn::GetAZs": ""},
        "condition": {"Condition": "IsProd"},
        "and": {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
        "or": {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]},
        "cidr": {"Fn::Cidr": ["10.0.0.0/16", 4, 8]},
        # CloudFormation reads an unquoted date as a string.
        "date": "2010-09-09",
    }


def test_loader_rejects_a_file_without_resources(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="Resources"):
        _load(tmp_path, "Description: nothing\n")


def test_loader_reports_unknown_tags(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot read"):
        _load(tmp_path, "Resources: !Bogus x\n")


REFS = {"AWS::StackName": "st", "AWS::AccountId": "123", "AWS::Region": "eu-west-1", "Q": "url"}
ATTRS = {("Q", "Arn"): "arn:q"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"Ref": "Q"}, "url"),
        ({"Fn::Sub": "${AWS::StackName}-${AWS::AccountId}-${AWS::Region}"}, "st-123-eu-west-1"),
        ({"Fn::Sub": "${Q} ${Q.Arn} ${!Literal}"}, "url arn:q ${Literal}"),
        ({"Fn::Sub": ["${X}/${Q}", {"X": {"Fn::GetAtt": ["Q", "Arn"]}}]}, "arn:q/url"),
        ({"Fn::GetAtt": ["Q", "Arn"]}, "arn:q"),
        ({"Fn::GetAtt": "Q.Arn"}, "arn:q"),
        ({"Fn::Join": ["-", ["a", {"Ref": "Q"}, {"Fn::Sub": "${Q.Arn}"}]]}, "a-url-arn:q"),
        (
            {"deadLetterTargetArn": {"Fn::GetAtt": ["Q", "Arn"]}, "maxReceiveCount": 5},
            {"deadLetterTargetArn": "arn:q", "maxReceiveCount": 5},
        ),
        ([{"Ref": "Q"}, 1, "x"], ["url", 1, "x"]),
    ],
)
def test_resolve(value: Any, expected: Any) -> None:
    assert resolve(value, REFS, ATTRS) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"Ref": "Missing"},
        {"Fn::GetAtt": ["Q", "QueueName"]},
        {"Fn::Sub": "${Missing}"},
        {"Fn::Sub": "${Missing.Arn}"},
        {"Fn::Join": [",", "not-a-list"]},
        {"Fn::If": ["Cond", "a", "b"]},
    ],
)
def test_resolve_raises_on_what_it_cannot_resolve(value: Any) -> None:
    with pytest.raises(TemplateError):
        resolve(value, REFS, ATTRS)


def test_references_lists_refs_getatts_and_sub_variables() -> None:
    value = {
        "a": {"Ref": "A"},
        "b": [{"Fn::GetAtt": "B.Arn"}],
        "c": {"Fn::Sub": ["${C}-${Local}-${AWS::Region}-${!Escaped}", {"Local": {"Ref": "D"}}]},
    }
    assert references(value) == {"A", "B", "C", "D", "AWS::Region"}


# -- the repository's template.yaml ------------------------------------------------------------


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    template = load_template()
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    res: dict[str, Any] = template["Resources"]
    return res


def function(name: str) -> dict[str, Any]:
    """A function's properties as SAM applies them: its own over the Globals'."""
    template = load_template()
    defaults = dict(template["Globals"]["Function"])
    own = dict(template["Resources"][name]["Properties"])
    env = {
        **defaults.pop("Environment")["Variables"],
        **own.pop("Environment", {}).get("Variables", {}),
    }
    return {**defaults, **own, "Environment": {"Variables": env}}


@pytest.mark.parametrize("lane", ["cpu", "gpu"])
def test_template_declares_each_lane_queue_with_its_dlq(
    resources: dict[str, Any], lane: str
) -> None:
    queue = resources[f"{lane.title()}Queue"]
    dlq = resources[f"{lane.title()}DeadLetterQueue"]
    assert queue["Type"] == dlq["Type"] == "AWS::SQS::Queue"
    props = queue["Properties"]
    assert props["QueueName"] == {"Fn::Sub": f"${{AWS::StackName}}-{lane}"}
    assert (
        props["VisibilityTimeout"] == Settings().queue_visibility_timeout_s
    )  # the heartbeat assumes it
    assert props["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert props["ReceiveMessageWaitTimeSeconds"] == 20
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [f"{lane.title()}DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert dlq["Properties"] == {
        "QueueName": {"Fn::Sub": f"${{AWS::StackName}}-{lane}-dlq"},
        "MessageRetentionPeriod": 14 * 24 * 3600,
    }


def test_template_declares_the_jobs_table(resources: dict[str, Any]) -> None:
    table = resources["JobsTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    assert props["TableName"] == {"Fn::Sub": "${AWS::StackName}-jobs"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    indexes = {index["IndexName"]: index for index in props["GlobalSecondaryIndexes"]}
    assert set(indexes) == {CALLER_INDEX, INFLIGHT_INDEX, FAILED_INDEX, CALLER_INFLIGHT_INDEX}
    assert indexes[CALLER_INDEX]["KeySchema"] == [
        {"AttributeName": "caller", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    # Sparse indexes: only jobs not yet ended carry `inflight`, only failed ones `failed`.
    assert indexes[INFLIGHT_INDEX]["KeySchema"] == [
        {"AttributeName": "inflight", "KeyType": "HASH"},
        {"AttributeName": "updated_at", "KeyType": "RANGE"},
    ]
    assert indexes[FAILED_INDEX]["KeySchema"] == [
        {"AttributeName": "failed", "KeyType": "HASH"},
        {"AttributeName": "updated_at", "KeyType": "RANGE"},
    ]
    # The quota only counts: keys suffice.
    assert indexes[CALLER_INFLIGHT_INDEX]["KeySchema"] == [
        {"AttributeName": "inflight_caller", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert indexes.pop(CALLER_INFLIGHT_INDEX)["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert all(i["Projection"] == {"ProjectionType": "ALL"} for i in indexes.values())
    assert {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]} == {
        "job_id": "S",
        "caller": "S",
        "created_at": "S",
        "inflight": "S",
        "updated_at": "S",
        "failed": "S",
        "inflight_caller": "S",
    }
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_template_declares_the_workers_table(resources: dict[str, Any]) -> None:
    table = resources["WorkersTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    assert props["TableName"] == {"Fn::Sub": "${AWS::StackName}-workers"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    # offload.aws.fleet: one partition per lane, a worker per item; read with one Query a lane.
    assert props["KeySchema"] == [
        {"AttributeName": "lane", "KeyType": "HASH"},
        {"AttributeName": "worker_id", "KeyType": "RANGE"},
    ]
    assert "GlobalSecondaryIndexes" not in props
    # Crashed workers' items go by themselves; nothing here is worth a backup.
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert "PointInTimeRecoverySpecification" not in props


def test_workers_write_the_workers_table_and_the_api_only_reads_it(
    resources: dict[str, Any],
) -> None:
    arn = {"Fn::GetAtt": ["WorkersTable", "Arn"]}
    statements = resources["GpuWorkerRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    granted = [s["Action"] for s in statements if s["Resource"] == arn]
    assert granted == [["dynamodb:PutItem", "dynamodb:DeleteItem"]]
    api = function("ApiFunction")
    reads = [
        statement
        for policy in api["Policies"]
        for statement in policy.get("Statement", [])
        if statement["Resource"] == arn
    ]
    assert [statement["Action"] for statement in reads] == ["dynamodb:Query"]
    assert api["Environment"]["Variables"]["OFFLOAD_WORKERS_TABLE"] == {"Ref": "WorkersTable"}
    user_data = resources["GpuWorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"][
        "UserData"
    ]["Fn::Base64"]["Fn::Sub"]
    assert "OFFLOAD_WORKERS_TABLE=${WorkersTable}" in user_data


def test_template_declares_the_results_bucket(resources: dict[str, Any]) -> None:
    bucket = resources["ResultsBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    props = bucket["Properties"]
    assert props["BucketName"] == {"Fn::Sub": "${AWS::StackName}-results-${AWS::AccountId}"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    rules = {r["Prefix"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    # Job artifacts and SageMaker's outputs live as long as job records; indexes stay.
    assert set(rules) == {"jobs/", "sagemaker/"}
    for rule in rules.values():
        assert (rule["ExpirationInDays"], rule["Status"]) == (30, "Enabled")


def test_template_api_function_gets_the_resource_names(resources: dict[str, Any]) -> None:
    fn = resources["ApiFunction"]
    assert fn["Type"] == "AWS::Serverless::Function"
    env = function("ApiFunction")["Environment"]["Variables"]
    assert env["OFFLOAD_JOBS_TABLE"] == {"Ref": "JobsTable"}
    assert env["OFFLOAD_RESULTS_BUCKET"] == {"Ref": "ResultsBucket"}
    assert env["OFFLOAD_CPU_QUEUE_URL"] == {"Ref": "CpuQueue"}
    assert env["OFFLOAD_GPU_QUEUE_URL"] == {"Ref": "GpuQueue"}
    assert env["OFFLOAD_STACK_NAME"] == {"Ref": "AWS::StackName"}
    # Every policy names resources of this stack, never a bare "*" (the sagemaker lane's
    # endpoints are `<stack>-*`: the stack's own, deployed apart).
    policies = json.dumps(fn["Properties"]["Policies"])
    assert '"*"' not in policies
    assert policies.count("*") == policies.count('${AWS::StackName}-*"')


def test_template_api_takes_its_callers_from_a_jwt_authorizer(resources: dict[str, Any]) -> None:
    api = resources["HttpApi"]["Properties"]["Auth"]
    assert api["DefaultAuthorizer"] == "Jwt"
    jwt = api["Authorizers"]["Jwt"]
    assert jwt["IdentitySource"] == "$request.header.Authorization"
    assert jwt["JwtConfiguration"] == {
        "issuer": {"Ref": "JwtIssuer"},
        "audience": {"Ref": "JwtAudience"},
    }
    fn = resources["ApiFunction"]["Properties"]
    assert fn["Environment"]["Variables"]["OFFLOAD_AUTH"] == "jwt"
    events = fn["Events"]
    # Every route goes through the authorizer but the health check and the dashboard's
    # static files (which hold no data: the page calls the API with the caller's token).
    public = {"/healthz", "/dashboard", "/dashboard/{name}"}
    for name, event in events.items():
        assert event["Properties"]["ApiId"] == {"Ref": "HttpApi"}
        unauthenticated = event["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
        assert unauthenticated == (event["Properties"]["Path"] in public), name


def test_template_function_outlives_its_longest_inline_task(resources: dict[str, Any]) -> None:
    # An inline job shorter than the function's timeout (less the margin) can run in it;
    # longer ones spill. The longest inline task must fit, or it would always spill.
    timeout = function("ApiFunction")["Timeout"]
    assert timeout >= INLINE_MAX_TIMEOUT_S + Settings().lambda_deadline_margin_s + 5


@pytest.mark.parametrize(
    "name", ["ApiFunction", "CompletionsFunction", "SweepFunction", "SchedulerFunction"]
)
def test_every_function_finds_the_stacks_resources(name: str) -> None:
    env = function(name)["Environment"]["Variables"]
    for variable in ("OFFLOAD_JOBS_TABLE", "OFFLOAD_RESULTS_BUCKET", "OFFLOAD_STACK_NAME"):
        assert variable in env, (name, variable)
    assert function(name)["Runtime"] == "python3.12"


def test_sagemaker_notifications_reach_the_completions_function(
    resources: dict[str, Any],
) -> None:
    settings = Settings()
    topics: tuple[tuple[Literal["success", "error"], str], ...] = (
        ("success", "SageMakerSuccessTopic"),
        ("error", "SageMakerErrorTopic"),
    )
    for outcome, topic in topics:
        name = resources[topic]["Properties"]["TopicName"]
        assert name == {"Fn::Sub": f"${{AWS::StackName}}-sagemaker-{outcome}"}
        assert settings.sagemaker_topic_arn(outcome).endswith(
            f"{settings.stack_name}-sagemaker-{outcome}"
        )
    subscriptions = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::SNS::Subscription" and r["Properties"]["Protocol"] == "sqs"
    ]
    assert {s["TopicArn"]["Ref"] for s in subscriptions} == {
        "SageMakerSuccessTopic",
        "SageMakerErrorTopic",
    }
    assert all(s["Endpoint"] == {"Fn::GetAtt": ["CompletionsQueue", "Arn"]} for s in subscriptions)
    (event,) = resources["CompletionsFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = resources["CompletionsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["CompletionsDeadLetterQueue", "Arn"]
    }
    assert queue["VisibilityTimeout"] >= 6 * function("CompletionsFunction")["Timeout"]
