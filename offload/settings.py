"""The one configuration object: every value comes from `OFFLOAD_*` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from offload.outbound import IPNetwork, parse_networks

QueueLane = Literal["cpu", "gpu"]
AuthMode = Literal["none", "tokens", "jwt"]

# moto's fixed account: with only an endpoint set, names and URLs derive from it.
LOCAL_ACCOUNT_ID = "123456789012"


class Settings(BaseSettings):
    """offload's configuration. With only `OFFLOAD_AWS_ENDPOINT_URL` set, the defaults name
    the resources the local stack creates from `template.yaml`."""

    # hide_input_in_errors: a validation error would otherwise quote every value, tokens too.
    model_config = SettingsConfigDict(
        env_prefix="OFFLOAD_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    aws_account_id: str = LOCAL_ACCOUNT_ID
    stack_name: str = "offload"

    # Explicit names/URLs win (the deployed template sets them); otherwise derived.
    jobs_table: str | None = None
    workers_table: str | None = None
    results_bucket: str | None = None
    cpu_queue_url: str | None = None
    gpu_queue_url: str | None = None
    cpu_dlq_url: str | None = None
    gpu_dlq_url: str | None = None

    # Who a request's caller is. "none": everyone is the `local` caller (make dev); "tokens":
    # `Authorization: Bearer <token>`, looked up in api_tokens; "jwt": the `sub` claim that
    # API Gateway's JWT authorizer verified. Unset: jwt on Lambda, none elsewhere, so a
    # deployed API is never open by accident.
    auth: AuthMode | None = None
    # For auth "tokens": "token=caller" pairs, comma-separated.
    api_tokens: str | None = Field(default=None, repr=False)
    # Callers who may read and replay the dead-letter queues (comma-separated). With auth
    # "none" the local caller may.
    operators: str = ""
    # The bearer token the CLI sends.
    api_token: str | None = Field(default=None, repr=False)

    # The sagemaker lane's sweep looks at jobs unchanged this long (their notification may
    # have been lost), and gives an attempt up this long after its task's time limit.
    sagemaker_sweep_after_s: float = Field(default=600.0, ge=0)
    # How long a sagemaker request may wait in its endpoint's queue (SageMaker's own default
    # is 6 hours); the sweep gives an attempt up only after this plus its time limit.
    sagemaker_request_ttl_s: int = Field(default=3600, ge=60, le=21600)

    # Text generation (rag.answer's last step): an OpenAI-compatible endpoint, e.g.
    # https://api.openai.com/v1, a vLLM or TGI server, or `offload dev`'s local stand-in.
    llm_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str | None = Field(default=None, repr=False)
    llm_timeout_s: float = Field(default=60.0, gt=0)

    # rag.answer's generation: on the OpenAI-compatible endpoint above, or as an
    # `llm.generate` job on the sagemaker lane (the gpu worker is free while it runs).
    rag_generation: Literal["endpoint", "sagemaker"] = "endpoint"
    # A job waiting for another one it submitted looks again this often even if nobody
    # wakes it (the other job's end wakes it at once, unless that wake-up is lost).
    wait_recheck_s: float = Field(default=300.0, ge=1, le=900)

    # Level of the JSON log lines of the API and the workers.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Where the CLI finds the API; defaults to api_host:api_port.
    api_url: str | None = None
    local_aws_port: int = 5000

    # Inline lane: threads per API process, and the longest inline job a task may declare.
    inline_concurrency: int = Field(default=4, ge=1, le=64)
    inline_retry_max_delay_s: float = Field(default=5.0, ge=0)
    # Jobs that may wait for an inline slot; more spill to the cpu lane.
    inline_queue_size: int = Field(default=64, ge=0, le=10_000)
    # On Lambda, an inline attempt starts only if it can end this long before the invocation's
    # deadline, otherwise it spills to the cpu lane: time to claim it and record its outcome,
    # each one AWS call that may take up to aws_timeout_s.
    lambda_deadline_margin_s: float = Field(default=5.0, ge=0)
    # At API shutdown, how long running inline jobs may take to finish.
    inline_shutdown_grace_s: float = Field(default=15.0, ge=0)

    worker_concurrency: int | None = Field(default=None, ge=1)
    # A task gets SoftTimeLimitExceeded at its timeout_s; this much later its process ends.
    hard_limit_grace_s: float = Field(default=30.0, gt=0)
    # On SIGTERM a worker lets running jobs finish this long, then releases them to others
    # (below the two minutes an EC2 spot or scale-in notice leaves).
    worker_shutdown_grace_s: float = Field(default=60.0, ge=0)
    # A GPU fleet worker (template.yaml): its auto-scaling group and the termination hook it
    # completes once drained (workers/lifecycle.py); both unset elsewhere.
    asg_name: str | None = None
    asg_lifecycle_hook: str | None = None
    imds_url: str = "http://169.254.169.254"
    drain_poll_s: float = Field(default=5.0, gt=0)
    # The queues' visibility timeout (template.yaml). Short, so that a dead worker's job is
    # delivered again soon; the heartbeat extends it, and the lease, while a job runs.
    queue_visibility_timeout_s: int = Field(default=60, ge=3, le=43200)
    # How long a worker's processes may take to load their models before it gives up.
    worker_warmup_timeout_s: float = Field(default=600.0, gt=0)
    # How long a worker keeps writing a finished attempt's end through a store outage (its
    # heartbeat holds the lease meanwhile) before it lets the job be taken over.
    worker_settle_patience_s: float = Field(default=120.0, ge=0)
    # Long-poll time of a worker's SQS receive.
    worker_wait_time_s: int = Field(default=10, ge=0, le=20)

    # Claim check: a payload or result whose JSON is larger than this is kept in the results
    # bucket, and the SQS message and the job record carry a reference to it. Inline, a
    # payload rides in the SQS message (base64 twice: x1.78, under 256 KiB) and in the job
    # record with its result (DynamoDB: 400 KB), and every read of the record pays for it:
    # S3 is cheaper from a few KiB up. 0 keeps every payload and result in S3.
    claim_check_bytes: int = Field(default=32 * 1024, ge=0, le=100 * 1024)
    # The largest payload a job takes (its JSON), answered 413 above. Behind API Gateway and
    # Lambda a request stops at Lambda's 6 MB (the body counted as escaped into the event).
    max_payload_bytes: int = Field(default=6 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # The largest result a task may return (its JSON); above it the job fails.
    max_result_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # How long the presigned URL of a result kept in S3 (`result_download`) stays valid.
    result_url_ttl_s: int = Field(default=600, ge=10, le=12 * 3600)

    # Jobs a caller may have in flight (not yet ended) at once; more are answered 429 with
    # Retry-After. 0: no limit. Jobs a job submits for itself (`ctx.submit_job`) are exempt.
    max_jobs_in_flight: int = Field(default=1000, ge=0, le=1_000_000)
    quota_retry_after_s: int = Field(default=5, ge=1, le=3600)
    # A caller far from its limit is counted again at most this often per process
    # (offload.submit.quotas); near it, on every submit.
    quota_recount_s: float = Field(default=1.0, ge=0, le=60)
    # Only jobs submitted this recently count: one that never ends (its message lost, say)
    # stops holding its caller's quota after a day instead of until its record expires.
    quota_window_s: float = Field(default=24 * 3600.0, gt=0)

    # notify.webhook: the key of its signature header, and the destinations it may reach
    # besides public addresses (CIDRs, comma-separated: `offload dev` allows loopback).
    webhook_secret: str | None = Field(default=None, repr=False)
    webhook_allowed_networks: str = ""
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=14)

    # Log lines may quote error messages, which can quote a payload (a validation error of
    # the task's own, say): off by default, the message stays in the job record.
    log_error_messages: bool = False
    job_retention_days: int = Field(default=30, ge=1)
    # Seconds an AWS call may take before the API answers 503.
    aws_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _readable(self) -> Settings:
        # Fail at start-up, not at the first request.
        if self.auth_mode == "tokens":
            self.token_callers()
        self.webhook_networks()
        return self

    @property
    def auth_mode(self) -> AuthMode:
        """How callers are identified (see `auth`)."""
        if self.auth is not None:
            return self.auth
        return "jwt" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "none"

    def token_callers(self) -> dict[str, str]:
        """api_tokens as {token: caller}; ValueError names what is wrong with it."""
        pairs: dict[str, str] = {}
        for entry in (self.api_tokens or "").split(","):
            if not entry.strip():
                continue
            token, sep, caller = entry.strip().partition("=")
            if not sep or not token.strip() or not caller.strip():
                raise ValueError(
                    "OFFLOAD_API_TOKENS takes comma-separated token=caller pairs; "
                    f"entry {len(pairs) + 1} is not one"
                )
            pairs[token.strip()] = caller.strip()
        if not pairs:
            raise ValueError("OFFLOAD_AUTH=tokens needs OFFLOAD_API_TOKENS (token=caller,...)")
        return pairs

    def webhook_networks(self) -> tuple[IPNetwork, ...]:
        """webhook_allowed_networks, parsed; ValueError names a bad entry."""
        try:
            return parse_networks(self.webhook_allowed_networks)
        except ValueError as exc:
            raise ValueError(f"OFFLOAD_WEBHOOK_ALLOWED_NETWORKS: {exc}") from None

    def operator_callers(self) -> frozenset[str]:
        """The callers `operators` names."""
        return frozenset(c.strip() for c in self.operators.split(",") if c.strip())

    @property
    def is_local(self) -> bool:
        """True when talking to a local AWS (moto) rather than the real one."""
        return self.aws_endpoint_url is not None

    @property
    def heartbeat_interval_s(self) -> float:
        """How often a worker extends its messages' visibility and renews its leases."""
        return self.queue_visibility_timeout_s / 3

    @property
    def lease_s(self) -> float:
        """How long a claim holds without renewal: shorter than the visibility timeout, so a
        message delivered again after its worker died finds the lease expired."""
        return self.queue_visibility_timeout_s * 5 / 6

    def api_base(self) -> str:
        """The API's base URL, for clients such as the CLI."""
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    def table_name(self) -> str:
        """The jobs table."""
        return self.jobs_table or f"{self.stack_name}-jobs"

    def workers_table_name(self) -> str:
        """The workers table: each live worker's last beat (offload.aws.fleet)."""
        return self.workers_table or f"{self.stack_name}-workers"

    def bucket_name(self) -> str:
        """The results bucket (bucket names are global, hence the account id)."""
        return self.results_bucket or f"{self.stack_name}-results-{self.aws_account_id}"

    def queue_name(self, lane: QueueLane) -> str:
        """The SQS queue name of a queue lane."""
        return f"{self.stack_name}-{lane}"

    def queue_url(self, lane: QueueLane) -> str:
        """The SQS queue URL of a queue lane, computed so that no AWS call is needed."""
        explicit = self.cpu_queue_url if lane == "cpu" else self.gpu_queue_url
        return explicit or self._sqs_url(self.queue_name(lane))

    def dlq_url(self, lane: QueueLane) -> str:
        """The URL of a queue lane's dead-letter queue."""
        explicit = self.cpu_dlq_url if lane == "cpu" else self.gpu_dlq_url
        return explicit or self._sqs_url(f"{self.queue_name(lane)}-dlq")

    def completions_queue_url(self) -> str:
        """The queue SageMaker's notifications reach the completions function through."""
        return self._sqs_url(f"{self.stack_name}-completions")

    def sagemaker_topic_arn(self, outcome: Literal["success", "error"]) -> str:
        """The SNS topic an async endpoint posts its successes or errors to."""
        return (
            f"arn:aws:sns:{self.aws_region}:{self.aws_account_id}:"
            f"{self.stack_name}-sagemaker-{outcome}"
        )

    def _sqs_url(self, name: str) -> str:
        base = self.aws_endpoint_url or f"https://sqs.{self.aws_region}.amazonaws.com"
        return f"{base.rstrip('/')}/{self.aws_account_id}/{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
