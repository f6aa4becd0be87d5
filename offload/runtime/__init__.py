"""A job's attempts, on whichever process runs them: the verdict of a delivery, the attempt
(begin, run, settle), waiting for a child job, the inline runner, batches, settling SageMaker
notifications, and the sweeps' findings (stuck, redriven, unrunnable jobs).

The API's import never loads this package: an inline job loads it when it first runs."""
