"""The `offload` command: run the system (`dev`, `api`, `worker`) and use it (`submit`, `jobs`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pydantic import ValidationError

from offload.settings import get_settings

TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}


class ApiError(RuntimeError):
    """The API answered with an error (or not at all)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `offload` console script."""
    try:
        parser = _parser()
    except ValidationError as exc:
        # A wrong OFFLOAD_* variable: say which, without a traceback.
        print(f"offload: invalid configuration: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ApiError as exc:
        print(f"offload: {exc}", file=sys.stderr)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    settings = get_settings()
    default_api = settings.api_base()
    parser = argparse.ArgumentParser(prog="offload", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="the whole system on a local AWS (moto), until Ctrl-C")
    dev.add_argument("--aws-port", type=int, default=settings.local_aws_port)
    dev.add_argument("--api-port", type=int, default=settings.api_port)
    dev.add_argument(
        "--aws-endpoint",
        metavar="URL",
        help="an AWS endpoint already running (moto, LocalStack) to provision and use "
        "instead of starting a moto server",
    )
    dev.add_argument(
        "--faults",
        metavar="PLAN",
        help="put a fault proxy between the processes and the local AWS, e.g. "
        "'seed=7;sqs=refuse:0.03,drop:0.03,slow:0.03;*=slow:0.01' ('none': the proxy only)",
    )
    dev.set_defaults(run=_dev)

    api = sub.add_parser("api", help="serve the API with uvicorn")
    api.add_argument("--host", default=settings.api_host)
    api.add_argument("--port", type=int, default=settings.api_port)
    api.set_defaults(run=_api)

    worker = sub.add_parser("worker", help="a Celery worker for one queue lane")
    worker.add_argument("--lane", choices=["cpu", "gpu"], required=True)
    worker.add_argument(
        "--concurrency",
        type=int,
        default=settings.worker_concurrency,
        help="pool processes (default: cores for cpu, 1 for gpu)",
    )
    worker.add_argument("--loglevel", default=settings.log_level)
    worker.set_defaults(run=_worker)

    submit = sub.add_parser("submit", help="submit a job: offload submit TASK JSON [--wait]")
    submit.add_argument("task")
    submit.add_argument("payload", nargs="?", default="{}", help="the payload as JSON")
    submit.add_argument("--wait", action="store_true", help="follow the job until it ends")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--api", default=default_api)
    submit.set_defaults(run=_submit)

    jobs = sub.add_parser("jobs", help="list jobs or show one")
    jobs_sub = jobs.add_subparsers(required=True, metavar="ACTION")
    listing = jobs_sub.add_parser("list", help="your jobs, newest first")
    listing.add_argument("--status")
    listing.add_argument("--task")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor")
    listing.add_argument("--api", default=default_api)
    listing.set_defaults(run=_jobs_list)
    show = jobs_sub.add_parser("show", help="one job")
    show.add_argument("job_id")
    show.add_argument("--wait", action="store_true", help="follow the job until it ends")
    show.add_argument("--api", default=default_api)
    show.set_defaults(run=_jobs_show)
    cancel = jobs_sub.add_parser("cancel", help="cancel a job (409 if it has ended)")
    cancel.add_argument("job_id")
    cancel.add_argument("--api", default=default_api)
    cancel.set_defaults(run=_jobs_cancel)
    dlq = sub.add_parser("dlq", help="dead letters of a queue lane")
    dlq_sub = dlq.add_subparsers(required=True, metavar="ACTION")
    dlq_list = dlq_sub.add_parser("list", help="the lane's dead letters and why")
    dlq_list.add_argument("lane", choices=["cpu", "gpu"])
    dlq_list.add_argument("--api", default=default_api)
    dlq_list.set_defaults(run=_dlq_list)
    replay = dlq_sub.add_parser("replay", help="send dead letters back to work")
    replay.add_argument("lane", choices=["cpu", "gpu"])
    replay.add_argument(
        "--job",
        action="append",
        dest="job_ids",
        metavar="JOB_ID",
        help="only this job (repeatable); default: all",
    )
    replay.add_argument("--api", default=default_api)
    replay.set_defaults(run=_dlq_replay)

    review = sub.add_parser(
        "review",
        help="the on-call's alarm review: alarms firing, queues, failures, stuck jobs",
        description="Reads CloudWatch, SQS and DynamoDB directly (not through the API), "
        "for the stack OFFLOAD_STACK_NAME in OFFLOAD_AWS_REGION, or the local stack when "
        "OFFLOAD_AWS_ENDPOINT_URL is set. Exit status 1 when an alarm is not OK or a job "
        "is stuck.",
    )
    review.add_argument(
        "--since", type=float, default=24.0, metavar="HOURS", help="failures this recent (24)"
    )
    review.add_argument("--json", action="store_true", help="machine-readable output")
    review.set_defaults(run=_review)
    return parser


def _review(args: argparse.Namespace) -> int:
    from datetime import timedelta

    import tasks
    from infra.ops.review import Reviewer, render

    report = Reviewer(get_settings(), tasks.catalog()).review(timedelta(hours=args.since))
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(render(report), end="")
    firing = any(alarm.state == "ALARM" for alarm in report.alarms) or report.stuck
    return 1 if firing or report.problems else 0


def _dlq_list(args: argparse.Namespace) -> int:
    listing = _call(args.api, "GET", f"/dlq/{args.lane}")
    print(f"{listing['count']} dead letter(s) in the {args.lane} lane")
    for letter in listing["messages"]:
        error = letter.get("error") or {}
        why = f" ({error['type']}: {error['message']})" if error else ""
        print(
            f"{letter['job_id'] or letter['message_id']}  {letter['task'] or '-':<20} "
            f"{letter['reason']}{why}"
        )
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    body = {"job_ids": args.job_ids} if args.job_ids else {}
    report = _call(args.api, "POST", f"/dlq/{args.lane}/replay", body)
    for job_id in report["replayed"]:
        print(f"replayed {job_id}")
    for job_id, why in report["skipped"].items():
        print(f"skipped  {job_id}: {why}")
    return 0 if not report["skipped"] else 1


def _dev(args: argparse.Namespace) -> int:
    from infra.local import dev
    from infra.local.fault_plan import FaultPlan, FaultSpecError

    try:
        faults = None if args.faults is None else FaultPlan.parse(args.faults)
    except FaultSpecError as exc:
        print(f"offload dev: {exc}", file=sys.stderr)
        return 2
    return dev.run(args.aws_port, args.api_port, aws_endpoint=args.aws_endpoint, faults=faults)


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from offload.observability import logs

    settings = get_settings()
    if settings.auth is None and not _loopback(args.host):
        print(
            f"offload api: serving on {args.host} with no OFFLOAD_AUTH would show every job to "
            "anyone who can reach it. Set OFFLOAD_AUTH=tokens (with OFFLOAD_API_TOKENS), or "
            "OFFLOAD_AUTH=none to serve openly on purpose.",
            file=sys.stderr,
        )
        return 2
    logs.configure("offload-api", settings.log_level, error_messages=settings.log_error_messages)
    # No uvicorn logging config: its loggers propagate to the root's JSON lines too.
    uvicorn.run("functions.api.main:app", host=args.host, port=args.port, log_config=None)
    return 0


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _worker(args: argparse.Namespace) -> int:
    # Celery is imported here only: the rest of the command stays light.
    from workers.app import app

    concurrency = args.concurrency or (1 if args.lane == "gpu" else (os.cpu_count() or 1))
    app.worker_main(
        [
            "worker",
            "-Q",
            args.lane,
            "-n",
            f"{args.lane}-{os.getpid()}@%h",
            "-c",
            str(concurrency),
            "-l",
            args.loglevel,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
    return 0


def _submit(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        print(f"offload: the payload is not JSON: {exc}", file=sys.stderr)
        return 2
    body: dict[str, Any] = {"task": args.task, "payload": payload}
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    job = _call(args.api, "POST", "/jobs", body)
    if not args.wait:
        _print(job)
        return 0
    return _follow(args.api, job)


def _jobs_list(args: argparse.Namespace) -> int:
    query = {
        k: v
        for k, v in {
            "status": args.status,
            "task": args.task,
            "limit": args.limit,
            "cursor": args.cursor,
        }.items()
        if v is not None
    }
    page = _call(args.api, "GET", "/jobs?" + urllib.parse.urlencode(query))
    for job in page["jobs"]:
        progress = job.get("progress") or {}
        print(
            f"{job['job_id']}  {job['status']:<8} {job['task']:<20} {job['lane']:<6} "
            f"attempts={job['attempts']} {progress.get('message', '')}"
        )
    if page.get("next_cursor"):
        print(f"more: --cursor {page['next_cursor']}")
    return 0


def _jobs_show(args: argparse.Namespace) -> int:
    job = _call(args.api, "GET", f"/jobs/{urllib.parse.quote(args.job_id)}")
    if args.wait:
        return _follow(args.api, job)
    _print(job)
    return 0


def _jobs_cancel(args: argparse.Namespace) -> int:
    job = _call(args.api, "POST", f"/jobs/{urllib.parse.quote(args.job_id)}/cancel", {})
    print(_describe(job))
    return 0


def _follow(api: str, job: dict[str, Any]) -> int:
    """Long-poll the job, telling each change on stderr, until it ends."""
    seen = None
    while True:
        state = (job["status"], job["attempts"], json.dumps(job.get("progress")))
        if state != seen:
            print(_describe(job), file=sys.stderr, flush=True)
            seen = state
        if job["status"] in TERMINAL:
            _print(job)
            return 0 if job["status"] == "SUCCESS" else 1
        job = _call(api, "GET", f"/jobs/{job['job_id']}?wait=20")


def _describe(job: dict[str, Any]) -> str:
    """One line for a job's state: progress while running, the error and next try on RETRY."""
    line = f"{job['job_id']} {job['status']} (attempt {job['attempts']})"
    progress = job.get("progress")
    if progress and job["status"] == "STARTED":
        line += f" {progress['percent']:.0f}% {progress['message']}"
    if job.get("cancel_requested") and job["status"] == "STARTED":
        line += " (cancel requested)"
    error = job.get("error")
    if error and job["status"] in ("RETRY", "FAILURE"):
        line += f" {error['type']}: {error['message']}"
    if job["status"] == "RETRY" and job.get("next_attempt_at"):
        line += f"; next attempt at {job['next_attempt_at']}"
    return line


def _call(api: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json", "accept": "application/json"}
    token = get_settings().api_token
    if token:  # the API's auth is "tokens" (OFFLOAD_API_TOKEN names the caller)
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        api.rstrip("/") + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            raise ApiError(f"{exc.code} {error['type']}: {error['message']}") from None
        except (ValueError, KeyError, TypeError):
            raise ApiError(f"{exc.code} from {api}{path}") from None
    except urllib.error.URLError as exc:
        raise ApiError(
            f"cannot reach the API at {api} ({exc.reason}); is `make dev` running?"
        ) from None


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2))


if __name__ == "__main__":
    sys.exit(main())
