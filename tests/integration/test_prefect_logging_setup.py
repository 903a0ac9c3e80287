"""Prefect configures logging once per process, the first time ``prefect.main`` is imported:
``logging.config.dictConfig``, not incremental, which closes every handler of the process. absl's
handler (created when TensorFlow is imported) closes its stream then unless that stream is the
*current* ``sys.stderr``/``sys.stdout``. A test that imported TensorFlow under pytest's capture,
then a test running a flow command in process (typer's ``CliRunner`` swaps ``sys.stderr``) as the
first to import ``prefect.main``: absl closed pytest's capture file and the session died with
"I/O operation on closed file" and "lost sys.stderr". ``tests/conftest.py`` sets Prefect's logging
up when the session starts; this runs that sequence in a pytest of its own (the session of these
tests has long set it up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

SEQUENCE = """
from pathlib import Path

from typer.testing import CliRunner


def test_a_handler_keeps_the_captured_stderr() -> None:
    import absl.logging  # noqa: F401  # its handler writes to sys.stderr of now: pytest's capture file


def test_a_flow_command_in_process(tmp_path: Path) -> None:
    import prefect.settings  # noqa: F401  # Prefect imported, as by the prefect_server fixture

    from flows.cli import app

    env = {"FKS_DB_URL": f"sqlite:///{tmp_path / 'fks.db'}", "FKS_DATA_DIR": str(tmp_path)}
    # no such account: refused (exit 2), after the command entered its flow runs (Prefect's tags)
    halted = CliRunner().invoke(app, ["halt", "--account", "desk", "--reason", "test"], env=env)
    assert halted.exit_code == 2 and "does not exist" in halted.output, halted.output


def test_the_next_test_is_captured() -> None:
    print("captured")
"""


def test_a_flow_command_run_in_process_after_absl_leaves_pytest_capture_open(tmp_path: Path) -> None:
    pytest.importorskip("absl.logging")
    (tmp_path / "test_sequence.py").write_text(SEQUENCE)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FKS_"))},
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-c", os.devnull, "--rootdir", str(tmp_path),
         "-p", "no:cacheprovider", "-q", "test_sequence.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and "3 passed" in done.stdout, done.stdout + done.stderr
