"""The API must stay light: importing its handler pulls in no worker or model package."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = (
    "celery",
    "kombu",
    "pycurl",
    "torch",
    "transformers",
    "sentence_transformers",
    "sagemaker",
    "reportlab",
)


@pytest.mark.parametrize("on_lambda", [False, True])
def test_api_handler_imports_no_heavy_package(on_lambda: bool) -> None:
    # On Lambda (AWS_LAMBDA_FUNCTION_NAME set) the handler also sets up its JSON logs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_LAMBDA_")}
    if on_lambda:
        env["AWS_LAMBDA_FUNCTION_NAME"] = "offload-api"
    code = "import json, sys; import functions.api.main; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    modules = set(json.loads(out.stdout))
    loaded = {name.split(".")[0] for name in modules}
    # Nor the attempt runtime: an inline job loads it when it first runs.
    assert "offload.web" in modules  # the probe itself works
    assert not {m for m in modules if m.startswith("offload.runtime")}
    assert "fastapi" in loaded  # the probe itself works
    assert ("aws_lambda_powertools" in loaded) == on_lambda
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.parametrize("module", ["functions.completions.main", "workers.app"])
def test_no_runtime_entry_point_imports_the_sagemaker_sdk(module: str) -> None:
    # The SDK takes seconds to import; only infra's endpoint deployment may use it.
    code = (
        f"import json, sys; import {module}; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "offload" in loaded  # the probe itself works
    assert "sagemaker" not in loaded
    if module.startswith("functions."):
        assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
