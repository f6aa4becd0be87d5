"""Lambda: SageMaker async inference notifications settle their jobs."""
