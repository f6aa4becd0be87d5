"""The only code that speaks boto3: clients, the job item codec, the job store's reads and
transitions (every conditional write of a job, by name), S3 objects and the claim check,
queues and the Celery protocol, dead letters, the workers table, SageMaker invocation, and
the record changes both sides share (a cancel request, waking a waiting parent)."""
