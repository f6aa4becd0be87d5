"""Operations: the `offload` CLI, `offload review`, SageMaker endpoint deployment."""
