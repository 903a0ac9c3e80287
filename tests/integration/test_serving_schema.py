"""Schemathesis against the REST service's /openapi.json: every operation, generated valid and
invalid inputs, with a valid key, on a real uvicorn server: no answer may be a server error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from storage import open_store
from storage.api_keys import create_api_key
from tests.serving_support import make_registry, running

pytestmark = pytest.mark.slow


def test_no_operation_answers_a_server_error(tmp_path: Path) -> None:
    registry = make_registry(tmp_path / "registry")
    engine = open_store(registry.db_url)
    with engine.begin() as conn:
        _, key = create_api_key(conn, "schemathesis")
    engine.dispose()
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=registry.db_url,
        mlflow_tracking_uri=registry.tracking_uri,
        serve_rate_per_minute=1_000_000,
    )
    st = Path(sys.executable).parent / "st"
    with running(settings) as url:
        spec = httpx.get(f"{url}/openapi.json").json()
        cmd = [
            str(st), "run", f"{url}/openapi.json",
            "--header", f"X-API-Key: {key}",
            "--checks", "not_a_server_error",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", "40",
            "--workers", "1",
            "--request-timeout", "60",
            "--seed", "7",
        ]  # fmt: skip
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert operations >= 8 and f"Tested: {operations}" in done.stdout, report
    generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert generated is not None and int(generated[1]) > 100 and generated[1] == generated[2], report
