"""The caller's side: `Jobs` (submit, get, wait, list, cancel), dispatch by lane, the
in-flight quota, and submitting a job's own child jobs. Never imports `offload.runtime`."""
