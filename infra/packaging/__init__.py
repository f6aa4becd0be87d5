"""The API function's deployment package for template.yaml's runtime."""
