"""An endpoint deployment's plan and its scale-to-zero, under moto (the SDK part is not here:
the sagemaker SDK is not a dev dependency, and moto's answers fail its read-back)."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3
import pytest
from moto import mock_aws

from infra.ops.sagemaker_endpoint import plan_for, scale_to_zero
from offload.settings import Settings


def test_the_plan_writes_under_the_results_bucket_and_notifies_the_stacks_topics() -> None:
    settings = Settings()
    made = plan_for(settings, "llm", image_uri="img", role_arn="role")
    assert made.endpoint_name == "offload-llm"
    assert made.output_path == f"s3://{settings.bucket_name()}/sagemaker/offload-llm/output/"
    assert made.failure_path == f"s3://{settings.bucket_name()}/sagemaker/offload-llm/failure/"
    assert made.success_topic == settings.sagemaker_topic_arn("success")
    assert made.error_topic == settings.sagemaker_topic_arn("error")
    assert made.resource_id == "endpoint/offload-llm/variant/AllTraffic"
    with pytest.raises(ValueError, match="max_instances"):
        plan_for(settings, "llm", image_uri="img", role_arn="role", max_instances=0)


def test_the_endpoint_scales_between_zero_and_its_maximum_on_its_backlog() -> None:
    with mock_aws():
        made = plan_for(Settings(), "llm", image_uri="img", role_arn="role", max_instances=3)
        autoscaling = boto3.client("application-autoscaling", region_name="us-east-1")
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        scale_to_zero(made, autoscaling, cloudwatch)

        (target,) = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
            "ScalableTargets"
        ]
        assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (
            made.resource_id,
            0,
            3,
        )
        policies = {
            p["PolicyType"]: p
            for p in autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")[
                "ScalingPolicies"
            ]
        }
        tracking = policies["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
        metric = tracking["CustomizedMetricSpecification"]
        assert metric["MetricName"] == "ApproximateBacklogSizePerInstance"
        assert metric["Dimensions"] == [{"Name": "EndpointName", "Value": "offload-llm"}]
        wake = policies["StepScaling"]
        (alarm,) = cloudwatch.describe_alarms()["MetricAlarms"]
        assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
        assert alarm["AlarmActions"] == [wake["PolicyARN"]]
        step = wake["StepScalingPolicyConfiguration"]["StepAdjustments"]
        assert step == [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]


def test_importing_the_deployment_does_not_import_the_sdk() -> None:
    code = (
        "import json, sys; import infra.ops.sagemaker_endpoint; "
        "print(json.dumps('sagemaker' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False
