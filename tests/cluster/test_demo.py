"""`make demo` works: the README's first command, run as a user would (its own control plane)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.cluster


def test_demo_runs_every_job_to_its_expected_end() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "batchyard.cli.main", "demo", "--plain", "--timeout", "240"],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "all 6 jobs finished" in proc.stdout
    assert "5 SUCCEEDED, 1 FAILED" in proc.stdout
    # The flaky job exited 1 once and was retried.
    assert "flaky          SUCCEEDED after 2 attempts" in proc.stdout
    assert "broken         FAILED (Essential container in task exited)" in proc.stdout
    # The AWS Batch gateway ran beside it: the endpoint and a ready-made AWS CLI line are printed.
    assert "AWS Batch API: http://127.0.0.1:" in proc.stdout
    assert "aws batch list-jobs --job-queue demo --job-status SUCCEEDED --endpoint-url http://" in proc.stdout
