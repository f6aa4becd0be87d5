"""AWS list prices (us-east-1) and what a job's counted requests cost at them.

Prices as published on AWS's pricing pages, stated for 2026-11-21; free tiers ignored.
DynamoDB's are the on-demand prices since the November 2024 reduction. Each DynamoDB write
is taken as one write unit (items up to 1 KB: a no-op job's item is well under it) and each
read by its consistency (1 unit strongly consistent, 0.5 eventually; items up to 4 KB).
"""

from __future__ import annotations

from typing import Any

PRICES_DATE = "2026-11-21"
API_MEMORY_GB = 1.0  # template.yaml: ApiFunction MemorySize 1024

PRICES: dict[str, Any] = {
    "date": PRICES_DATE,
    "region": "us-east-1",
    "sqs_per_million_requests": 0.40,  # standard queue; each 64 KB chunk of a payload is one
    "dynamodb_per_million_write_units": 0.625,  # on-demand, since 2024-11
    "dynamodb_per_million_read_units": 0.125,  # on-demand, since 2024-11
    "s3_per_thousand_put": 0.005,  # PUT, COPY, POST, LIST
    "s3_per_thousand_get": 0.0004,  # GET, HEAD and the rest
    "lambda_per_million_requests": 0.20,
    "lambda_per_gb_second": 0.0000166667,  # x86
    "api_gateway_http_per_million_requests": 1.00,  # HTTP API, first 300 million a month
}

_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
_S3_PUTS = {"PutObject", "CopyObject", "POST object", "GET bucket", "PUT bucket"}


def per_million_jobs(measured: dict[str, Any]) -> dict[str, float]:
    """USD per million jobs by item, from one round: its `counts` ("service:operation" ->
    requests), `dynamodb_read_units`, `api_requests`, `api_seconds` and `jobs`."""
    scale = 1_000_000 / measured["jobs"]
    usd = dict.fromkeys(("sqs", "dynamodb", "s3", "api_gateway", "lambda"), 0.0)
    for key, n in measured["counts"].items():
        service, _, op = key.partition(":")
        if service == "sqs" and op != "ReceiveMessage (empty)":
            usd["sqs"] += n * PRICES["sqs_per_million_requests"] / 1e6
        elif service == "dynamodb" and op in _WRITES:
            usd["dynamodb"] += n * PRICES["dynamodb_per_million_write_units"] / 1e6
        elif service == "dynamodb" and key not in measured["dynamodb_read_units"]:
            usd["dynamodb"] += n * PRICES["dynamodb_per_million_read_units"] / 1e6
        elif service == "s3":
            per = "s3_per_thousand_put" if op in _S3_PUTS else "s3_per_thousand_get"
            usd["s3"] += n * PRICES[per] / 1e3
    for units in measured["dynamodb_read_units"].values():
        usd["dynamodb"] += units * PRICES["dynamodb_per_million_read_units"] / 1e6
    api = measured["api_requests"]
    usd["api_gateway"] = api * PRICES["api_gateway_http_per_million_requests"] / 1e6
    usd["lambda"] = api * PRICES["lambda_per_million_requests"] / 1e6
    duration = measured["api_seconds"] * API_MEMORY_GB * PRICES["lambda_per_gb_second"]
    priced = {item: value * scale for item, value in usd.items()}
    priced["lambda_duration"] = duration * scale
    priced["total"] = sum(priced.values())
    return priced
