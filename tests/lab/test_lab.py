"""`bgpd lab` end to end: the default topology and a 4-host one, as a user runs them (the CLI)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgpd.lab import netns
from bgpd.lab.lab import Lab
from bgpd.lab.topology import load

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ping") is None, reason="needs root and ping"),
]

ROOT = Path(__file__).resolve().parents[2]


def _copy_topology(name: str, tmp_path: Path) -> Path:
    """The shipped topology under a unique name, so tests never meet a lab a user left running."""
    text = (ROOT / "configs" / name).read_text()
    unique = "t" + secrets.token_hex(3)
    lines = [f"name: {unique}" if line.startswith("name:") else line for line in text.splitlines()]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def lab_cli(topology: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bgpd", "lab", "-t", str(topology), "--state-dir", str(state), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture
def default_lab(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    topology = _copy_topology("lab.yaml", tmp_path)
    state = tmp_path / "state"
    try:
        yield topology, state
    finally:
        lab_cli(topology, state, "down")
        assert netns.list_namespaces(load(topology).prefix) == []


def test_default_topology_up_check_routes_down(default_lab: tuple[Path, Path]) -> None:
    topology, state = default_lab
    up = lab_cli(topology, state, "up")
    assert up.returncode == 0, up.stderr + up.stdout
    assert "2 hosts, 3 workloads" in up.stdout
    check = lab_cli(topology, state, "check")
    assert check.returncode == 0, check.stdout
    assert "12/12 pings answered" in check.stdout
    # the original's three checks, by name
    pings = {(p.source, p.target): p.ok for p in Lab(load(topology), state).check()}
    assert pings[("10.20.1.2", "10.20.2.2")]  # other host, other block
    assert pings[("10.20.1.2", "10.20.1.3")]  # other host, same /24
    assert pings[("10.20.1.2", "192.168.100.3")]  # a host
    routes = lab_cli(topology, state, "routes", "host0")
    assert routes.returncode == 0
    learned = routes.stdout.split("learned via BGP:")[1].split("blackholes:")[0]
    assert "10.20.2.0/24 via 192.168.100.3" in learned and "proto bird" in learned
    assert "10.20.1.3 via 192.168.100.3" in learned
    down = lab_cli(topology, state, "down")
    assert down.returncode == 0
    assert netns.list_namespaces(load(topology).prefix) == []


def test_up_twice_is_safe_and_down_cleans_after_a_crash(default_lab: tuple[Path, Path]) -> None:
    topology, state = default_lab
    assert lab_cli(topology, state, "up").returncode == 0
    again = lab_cli(topology, state, "up")
    assert again.returncode == 0, again.stderr
    assert lab_cli(topology, state, "check").returncode == 0
    # a crash of the earlier run: the state file is gone, only the namespaces remain
    (state / "state.json").unlink()
    assert lab_cli(topology, state, "down").returncode == 0
    assert netns.list_namespaces(load(topology).prefix) == []


def test_removed_workload_becomes_unreachable_and_its_route_disappears(
    default_lab: tuple[Path, Path],
) -> None:
    topology, state = default_lab
    assert lab_cli(topology, state, "up").returncode == 0
    lab = Lab(load(topology), state)
    host0 = lab.topo.host("host0")
    assert "10.20.1.3" in lab.learned(host0)
    removed = lab_cli(topology, state, "remove-workload", "10.20.1.3")
    assert removed.returncode == 0, removed.stderr
    netns.wait_for(lambda: "10.20.1.3" not in lab.learned(host0), 30, "the /32 withdrawn on host0")
    w0 = lab.workload_ns(host0, 0)
    assert not lab.ping(w0, "10.20.1.2", "10.20.1.3").ok
    assert lab.ping(w0, "10.20.1.2", "10.20.2.2").ok  # everything else still works


def _up_check_down(tmp_path: Path, shipped: str, summary: str, pings: str) -> str:
    """`up` a shipped topology, expect `summary` in its output and `pings` answered by `check`; always
    `down`, which must leave nothing. Returns `up`'s output."""
    topology = _copy_topology(shipped, tmp_path)
    state = tmp_path / "state"
    try:
        up = lab_cli(topology, state, "up")
        assert up.returncode == 0, up.stderr + up.stdout
        assert summary in up.stdout
        check = lab_cli(topology, state, "check")
        assert check.returncode == 0, check.stdout
        assert f"{pings} pings answered" in check.stdout
    finally:
        lab_cli(topology, state, "down")
    assert netns.list_namespaces(load(topology).prefix) == []
    return up.stdout


def test_four_hosts_three_workloads_each(tmp_path: Path) -> None:
    _up_check_down(tmp_path, "lab4.yaml", "4 hosts, 12 workloads", "180/180")


def test_up_that_cannot_write_its_state_fails_cleanly(tmp_path: Path) -> None:
    topology = _copy_topology("lab.yaml", tmp_path)
    state = tmp_path / "state"
    state.write_text("a file where the state directory should be")
    up = lab_cli(topology, state, "up")
    assert up.returncode == 1
    assert up.stderr.startswith("bgpd lab: lab up failed while writing the state directory")
    assert "Traceback" not in up.stderr
    assert netns.list_namespaces(load(topology).prefix) == []


def test_routes_that_do_not_converge_in_time_fail_up_name_the_logs_and_tear_down(tmp_path: Path) -> None:
    topology = _copy_topology("lab.yaml", tmp_path)
    state = tmp_path / "state"
    up = lab_cli(topology, state, "up", "--timeout", "0")
    assert up.returncode == 1
    assert "lab up failed while waiting for routes to converge" in up.stderr
    assert str(state / "host0.log") in up.stderr
    assert "Traceback" not in up.stderr
    assert netns.list_namespaces(load(topology).prefix) == []


def test_reflector_topology_converges_and_every_ping_answers(tmp_path: Path) -> None:
    out = _up_check_down(tmp_path, "lab-rr.yaml", "3 hosts, 2 reflectors, 5 workloads", "35/35")
    assert re.search(r"^rr1\s+192\.168\.100\.2\s+4/4\s+0\s+0\s+0\s+\(route reflector\)", out, re.M), out
