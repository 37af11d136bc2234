"""Skips are visible, and unexpected ones fail the run (issue 16).

A test that cannot run here skips itself with its reason (not root, a command not installed). Under
`scripts/test.sh` (`BGPD_TESTS_NO_SKIP=1`), which installs everything the tests need first, a skip can
only mean something is wrong: a checkout `nobody` cannot read, a hard dependency that fails to import
(`pytest.importorskip` would turn that into a skip), a missing package. Every skip is listed with its
reason (`-rs` in pyproject.toml) and the run fails, naming them. Elsewhere (a developer's partial
machine) skips stay skips.
"""

from __future__ import annotations

import os

import pytest

NO_SKIP = "BGPD_TESTS_NO_SKIP"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(NO_SKIP) != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if not skipped:
        return
    if reporter is not None:
        reporter.write_line(
            f"{len(skipped)} test(s) skipped under {NO_SKIP}=1 (scripts/test.sh installs everything the "
            "tests need, so a skip means something is wrong):",
            red=True,
        )
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reporter.write_line(f"  {report.nodeid}: {reason}", red=True)
    if exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
