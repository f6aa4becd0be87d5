"""Deploying a sagemaker-lane endpoint: `python -m infra.ops.sagemaker_endpoint --endpoint llm ...`.

It creates the model, an asynchronous endpoint configuration and the endpoint with the
sagemaker SDK (v3's `sagemaker.core` resources, imported here only: the SDK takes seconds to
import and no runtime path may load it). The configuration writes outputs and failures under
the results bucket and posts every outcome to the stack's SNS topics, which the completions
function reads. Then Application Auto Scaling makes the endpoint scale to zero, as AWS
describes for async endpoints: minimum capacity 0, target tracking on the backlog per
instance, and a step policy on the `HasBacklogWithoutCapacity` alarm to wake it from zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from offload.settings import Settings, get_settings

VARIANT = "AllTraffic"


@dataclass(frozen=True)
class EndpointPlan:
    """Everything one endpoint deployment creates, decided before any call."""

    endpoint_name: str
    image_uri: str
    role_arn: str
    instance_type: str
    output_path: str
    failure_path: str
    success_topic: str
    error_topic: str
    model_data_url: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    max_instances: int = 2
    # Queued requests per instance that target tracking aims for.
    backlog_per_instance: float = 5.0
    # Requests SageMaker hands one instance at once.
    max_concurrent_invocations: int = 4

    @property
    def resource_id(self) -> str:
        """The variant, as Application Auto Scaling names it."""
        return f"endpoint/{self.endpoint_name}/variant/{VARIANT}"


def plan_for(
    settings: Settings,
    endpoint: str,
    *,
    image_uri: str,
    role_arn: str,
    instance_type: str = "ml.g5.xlarge",
    model_data_url: str | None = None,
    environment: Mapping[str, str] | None = None,
    max_instances: int = 2,
    backlog_per_instance: float = 5.0,
) -> EndpointPlan:
    """The deployment of the stack's endpoint `endpoint` (`<stack>-<endpoint>`)."""
    if max_instances < 1:
        raise ValueError("max_instances must be at least 1")
    name = f"{settings.stack_name}-{endpoint}"
    bucket = settings.bucket_name()
    return EndpointPlan(
        endpoint_name=name,
        image_uri=image_uri,
        role_arn=role_arn,
        instance_type=instance_type,
        output_path=f"s3://{bucket}/sagemaker/{name}/output/",
        failure_path=f"s3://{bucket}/sagemaker/{name}/failure/",
        success_topic=settings.sagemaker_topic_arn("success"),
        error_topic=settings.sagemaker_topic_arn("error"),
        model_data_url=model_data_url,
        environment=dict(environment or {}),
        max_instances=max_instances,
        backlog_per_instance=backlog_per_instance,
    )


def create_endpoint(plan: EndpointPlan, session: Any = None, region: str | None = None) -> str:
    """Create the model, the async endpoint configuration and the endpoint; wait until it is
    in service. Its ARN."""
    from sagemaker.core.resources import Endpoint, EndpointConfig, Model
    from sagemaker.core.shapes import (
        AsyncInferenceClientConfig,
        AsyncInferenceConfig,
        AsyncInferenceNotificationConfig,
        AsyncInferenceOutputConfig,
        ContainerDefinition,
        ProductionVariant,
    )

    container: dict[str, Any] = {"image": plan.image_uri, "environment": dict(plan.environment)}
    if plan.model_data_url:
        container["model_data_url"] = plan.model_data_url
    Model.create(
        model_name=plan.endpoint_name,
        primary_container=ContainerDefinition(**container),
        execution_role_arn=plan.role_arn,
        session=session,
        region=region,
    )
    EndpointConfig.create(
        endpoint_config_name=plan.endpoint_name,
        production_variants=[
            ProductionVariant(
                variant_name=VARIANT,
                model_name=plan.endpoint_name,
                instance_type=plan.instance_type,
                initial_instance_count=1,
            )
        ],
        async_inference_config=AsyncInferenceConfig(
            output_config=AsyncInferenceOutputConfig(
                s3_output_path=plan.output_path,
                s3_failure_path=plan.failure_path,
                notification_config=AsyncInferenceNotificationConfig(
                    success_topic=plan.success_topic, error_topic=plan.error_topic
                ),
            ),
            client_config=AsyncInferenceClientConfig(
                max_concurrent_invocations_per_instance=plan.max_concurrent_invocations
            ),
        ),
        session=session,
        region=region,
    )
    endpoint = Endpoint.create(
        endpoint_name=plan.endpoint_name,
        endpoint_config_name=plan.endpoint_name,
        session=session,
        region=region,
    )
    endpoint.wait_for_status("InService")
    return str(endpoint.endpoint_arn)


def scale_to_zero(plan: EndpointPlan, autoscaling: Any, cloudwatch: Any) -> None:
    """Scale between 0 and `max_instances` by backlog, waking from zero on queued work."""
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": plan.resource_id,
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    autoscaling.register_scalable_target(**target, MinCapacity=0, MaxCapacity=plan.max_instances)
    dimensions = [{"Name": "EndpointName", "Value": plan.endpoint_name}]
    autoscaling.put_scaling_policy(
        **target,
        PolicyName=f"{plan.endpoint_name}-backlog",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": plan.backlog_per_instance,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker",
                "Dimensions": dimensions,
                "Statistic": "Average",
            },
            # Slow in, quicker out: an idle endpoint reaches zero after ten quiet minutes.
            "ScaleInCooldown": 600,
            "ScaleOutCooldown": 300,
        },
    )
    # Target tracking cannot leave zero (no instance, no per-instance backlog): this can.
    wake = autoscaling.put_scaling_policy(
        **target,
        PolicyName=f"{plan.endpoint_name}-wake-from-zero",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Average",
            "Cooldown": 300,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
    )
    cloudwatch.put_metric_alarm(
        AlarmName=f"{plan.endpoint_name}-has-backlog-without-capacity",
        AlarmDescription="Requests wait and no instance runs: start one.",
        Namespace="AWS/SageMaker",
        MetricName="HasBacklogWithoutCapacity",
        Dimensions=dimensions,
        Statistic="Average",
        Period=60,
        EvaluationPeriods=2,
        DatapointsToAlarm=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="missing",
        AlarmActions=[wake["PolicyARN"]],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m infra.ops.sagemaker_endpoint`: deploy one endpoint of the stack."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.ops.sagemaker_endpoint", description=__doc__
    )
    parser.add_argument("--endpoint", default="llm", help="the task's endpoint (default: llm)")
    parser.add_argument("--image", required=True, help="the inference container's image URI")
    parser.add_argument("--role", required=True, help="the model's execution role ARN")
    parser.add_argument("--instance-type", default="ml.g5.xlarge")
    parser.add_argument("--model-data", default=None, help="s3:// URI of model.tar.gz")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--max-instances", type=int, default=2)
    args = parser.parse_args(argv)
    settings = get_settings()
    environment = dict(pair.split("=", 1) for pair in args.env)
    plan = plan_for(
        settings,
        args.endpoint,
        image_uri=args.image,
        role_arn=args.role,
        instance_type=args.instance_type,
        model_data_url=args.model_data,
        environment=environment,
        max_instances=args.max_instances,
    )
    import boto3

    session = boto3.session.Session(region_name=settings.aws_region)
    arn = create_endpoint(plan, session=session, region=settings.aws_region)
    scale_to_zero(plan, session.client("application-autoscaling"), session.client("cloudwatch"))
    sys.stdout.write(f"{plan.endpoint_name} is in service ({arn}); it scales to zero.\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
