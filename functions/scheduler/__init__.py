"""Lambda: scheduled upkeep (the sagemaker lane's sweep)."""
