"""Issue 17: ExaBGP's API helper, once it handed ExaBGP's pipes to bgpd, is coreutils' `sleep` (execv:
~1 MiB instead of a Python interpreter) and still dies with its ExaBGP (PR_SET_PDEATHSIG survives the
execve): when ExaBGP is killed (the next one gets a new helper) and when bgpd is killed (ExaBGP dies with
it, then the helper) - no process is left behind."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import Host, Underlay, gone

pytestmark = pytest.mark.e2e

DEADLINE = 30.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and not gone(int(entry)):
            found.append(int(entry))
    return found


def _attached_exabgp(host: Host) -> int | None:
    """The pid of the ExaBGP attached to `host`'s bgpd (None while bgpd or ExaBGP is not up yet)."""
    result = host.ctl("show", "status", "--json")
    if result.returncode != 0:
        return None
    exabgp = json.loads(result.stdout)["exabgp"]
    return int(exabgp["pid"]) if exabgp["alive"] and exabgp["attached"] else None


def _helper(exabgp: int) -> int | None:
    """ExaBGP's helper once it became `sleep` (None before)."""
    for child in _children(exabgp):
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "sleep":
                return child
        except OSError:
            continue
    return None


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def test_the_helper_sleeps_small_and_dies_with_exabgp_and_with_bgpd(underlay: Underlay) -> None:
    h0 = underlay.host("h0", 10)
    h0.write_config()
    bgpd = h0.start_bgpd()
    wait_for(lambda: _attached_exabgp(h0) is not None, DEADLINE, "ExaBGP attached")
    exabgp = _attached_exabgp(h0)
    assert exabgp is not None
    wait_for(lambda: _helper(exabgp) is not None, DEADLINE, "the helper exec'd into sleep")
    helper = _helper(exabgp)
    assert helper is not None and _rss_kib(helper) < 4096  # a Python interpreter is ~12 MiB
    assert Path(f"/proc/{helper}/cmdline").read_bytes().split(b"\0")[1] == b"infinity"

    os.kill(exabgp, signal.SIGKILL)  # ExaBGP dies: its helper with it; bgpd starts another
    first, first_helper = exabgp, helper
    wait_for(lambda: gone(first_helper), DEADLINE, "the helper gone with its ExaBGP")
    wait_for(
        lambda: (_attached_exabgp(h0) or first) != first, DEADLINE, "a new ExaBGP attached after the kill"
    )
    second = _attached_exabgp(h0)
    assert second is not None
    wait_for(lambda: _helper(second) is not None, DEADLINE, "the new ExaBGP's helper exec'd into sleep")
    second_helper = _helper(second)
    assert second_helper is not None

    os.kill(bgpd.pid, signal.SIGKILL)  # bgpd dies: ExaBGP with it, then the helper
    assert bgpd.popen.wait(DEADLINE) == -signal.SIGKILL
    wait_for(lambda: gone(second) and gone(second_helper), DEADLINE, "ExaBGP and its helper gone with bgpd")
