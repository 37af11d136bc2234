"""tests/conftest.py's policy (issue 16): under BGPD_TESTS_NO_SKIP=1 (scripts/test.sh) a skipped test fails
the run and is named with its reason; without it a skip stays a skip. Run on a copy of the conftest beside
a test file that skips one test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
PROBE = """
import pytest

def test_skipped():
    pytest.skip("etcd not installed")

def test_passes():
    pass
"""


@pytest.mark.parametrize("strict", [True, False])
def test_a_skip_fails_the_run_only_where_nothing_may_be_missing(tmp_path: Path, strict: bool) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "BGPD_TESTS_NO_SKIP"}
    if strict:
        env["BGPD_TESTS_NO_SKIP"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "SKIPPED [1]" in result.stdout and "etcd not installed" in result.stdout, result.stdout
    if strict:
        assert result.returncode == 1, result.stdout
        assert "test_probe.py::test_skipped: Skipped: etcd not installed" in result.stdout
    else:
        assert result.returncode == 0, result.stdout
