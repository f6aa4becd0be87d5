"""Structured logs and CloudWatch metrics (EMF)."""
