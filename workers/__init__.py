"""Celery workers on SQS: the app (`workers.app`) and the job runtime (`workers.runtime`)."""
