"""`functions.completions.main.handler`: SageMaker's notifications settle their jobs.

SageMaker posts each asynchronous inference's outcome to its success or error SNS topic;
both feed one SQS queue, whose batches reach this function. Powertools' batch processor
reports the records that failed (an AWS outage while settling), so only those come back;
SQS moves a record that keeps failing to the queue's DLQ. A message that is not a SageMaker
notification fails too, and ends there for an operator to read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

import tasks
from offload.aws.sagemaker import Notification
from offload.aws.store import JobStore
from offload.observability import logs
from offload.runtime.sagemaker_lane import SageMakerLane
from offload.settings import get_settings


def make_handler(lane: SageMakerLane) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A handler that settles jobs through `lane` (the local stack runs one too)."""
    processor = BatchProcessor(event_type=EventType.SQS)

    def settle(record: SQSRecord) -> str:
        notification = Notification.from_sqs_body(record.body)
        with logs.log_context(job_id=notification.inference_id):
            return lane.complete(notification)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = process_partial_response(
            event=event, record_handler=settle, processor=processor, context=context
        )
        return dict(response)

    return handler


settings = get_settings()
logs.configure_on_lambda(
    "offload-completions", settings.log_level, error_messages=settings.log_error_messages
)
lane = SageMakerLane(settings, JobStore(settings), tasks.catalog())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The SQS event source's entry point (ReportBatchItemFailures)."""
    return make_handler(lane)(event, context)
