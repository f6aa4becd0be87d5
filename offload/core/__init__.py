"""The job model and the rules it lives by, with no I/O: statuses and the moves allowed
between them, lease holders, the task catalog and `@task`, `JobContext`, backoff and result
encoding. Imports nothing of offload but `settings` and `errors`; never boto3."""
