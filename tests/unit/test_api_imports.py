"""The API must stay light: importing its handler pulls in no worker or model package."""

from __future__ import annotations

import json
import subprocess
import sys

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


def test_api_handler_imports_no_heavy_package() -> None:
    code = (
        "import json, sys; import functions.api.main; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "fastapi" in loaded  # the probe itself works
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
