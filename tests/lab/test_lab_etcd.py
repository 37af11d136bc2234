"""A lab driven only by etcd (issue 15's done-criterion), as a user runs it (the CLI): three hosts whose
bgpd gets nothing but its name and the datastore from its config file grow to four with `add-host` and
back with `remove-host`; every workload pings every other at each step; the sessions between the hosts
that did not change are never reset (their `since` and `flaps`, read here from each bgpd, stay the same);
no bgpd is restarted; `down` leaves no namespace, no process and no etcd data. Real etcd (Debian's
etcd-server), real bgpd and ExaBGP, real kernel in namespaces the lab creates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd import ctl
from bgpd.lab import netns
from bgpd.lab.topology import load
from tests.lab.test_lab import _copy_topology, lab_cli

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ping") is None or shutil.which("etcd") is None,
        reason="needs root, ping and etcd (Debian's etcd-server)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
ADDRESSES = {f"host{i}": (f"192.168.100.1{i}", f"fd00:100::1{i}") for i in range(3)}  # lab-etcd.yaml's
HOST3 = ("192.168.100.13", "fd00:100::13")  # what add-host gives the fourth host


def one_line_error(proc: subprocess.CompletedProcess[str], text: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert text in proc.stderr, proc.stderr


@pytest.fixture
def etcd_lab(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The shipped lab-etcd topology under a unique name (tests never meet a lab a user left running)."""
    topology = _copy_topology("lab-etcd.yaml", tmp_path)
    state = tmp_path / "state"
    try:
        yield topology, state
    finally:
        lab_cli(topology, state, "down")
        assert netns.list_namespaces(load(topology).prefix) == []


def state_of(state: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((state / "state.json").read_text())
    return result


def peers(state: Path, host: str) -> dict[str, dict[str, Any]]:
    """A host's bgpd sessions by peer address (its `peers` view over the control socket)."""
    return {p["address"]: p for p in ctl.request(str(state / host / "bgpd.ctl"), "peers")}


def established(state: Path, hosts: list[str]) -> dict[tuple[str, str], tuple[float, int]]:
    """(host, peer) -> (since, flaps) of every Established session among `hosts` (both families)."""
    addresses = {a for h in hosts for a in ADDRESSES[h]}
    out = {}
    for host in hosts:
        for address, p in peers(state, host).items():
            if address in addresses and p["state"] == "up":
                out[(host, address)] = (p["since"], p["flaps"])
    return out


def alive(pid: int) -> bool:
    """Does `pid` run (a zombie waiting for init to reap it has ended)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_three_hosts_from_etcd_grow_to_four_and_back(etcd_lab: tuple[Path, Path]) -> None:
    topology, state = etcd_lab
    up = lab_cli(topology, state, "up")
    assert up.returncode == 0, up.stderr + up.stdout
    assert "3 hosts, 4 workloads, dual stack" in up.stdout
    assert "datastore: etcd at http://192.168.100.2:2379" in up.stdout
    # each bgpd knows only its name and the datastore; the rest came from the records
    cfg = yaml.safe_load((state / "host0.yaml").read_text())
    assert cfg["node"] == {"name": "host0"}
    assert cfg["datastore"]["endpoints"] == ["http://192.168.100.2:2379"]
    assert cfg["bgp"] == {"hold_time": 9}
    assert not {"pools", "reflector", "filters"} & set(cfg)
    first = state_of(state)
    pids = dict(first["pids"])
    etcd_pid = first["datastore"]["pid"]
    assert (state / "etcd" / "data").is_dir() and alive(etcd_pid)
    original = ["host0", "host1", "host2"]
    sessions = established(state, original)
    assert len(sessions) == 12  # 3 hosts x 2 peers x 2 families

    check = lab_cli(topology, state, "check")
    assert check.returncode == 0, check.stdout
    assert "24/24 IPv4 pings answered" in check.stdout and "24/24 IPv6 pings answered" in check.stdout

    # bad requests: one line each, exit 1, nothing changed
    one_line_error(lab_cli(topology, state, "add-host", "host1"), "host1 is a host of the lab already")
    one_line_error(lab_cli(topology, state, "remove-host", "nosuch"), "no host 'nosuch' in the lab")
    one_line_error(
        lab_cli(topology, state, "add-host", "etcd"), "the name of one of the lab's own namespaces"
    )
    one_line_error(lab_cli(topology, state, "reload"), "changes through its records")

    # grow: a Node record, and every other host peers with the new one without a restart
    add = lab_cli(topology, state, "add-host", "host3", "--workloads", "2")
    assert add.returncode == 0, add.stderr + add.stdout
    assert "added host3 (192.168.100.13, block 10.20.1.192/26" in add.stdout
    assert "4 hosts, 6 workloads" in add.stdout
    assert "sessions between the other hosts: 12 kept, none reset" in add.stdout
    for host in original:
        seen = peers(state, host)
        assert all(seen[a]["state"] == "up" and seen[a]["type"] == "mesh" for a in HOST3), seen
    assert state_of(state)["pids"] == {**pids, "host3": state_of(state)["pids"]["host3"]}
    check = lab_cli(topology, state, "check")
    assert check.returncode == 0, check.stdout
    assert "54/54 IPv4 pings answered" in check.stdout and "54/54 IPv6 pings answered" in check.stdout
    routes = lab_cli(topology, state, "routes", "host3")  # a later command sees the added host
    assert "10.20.1.0/26 via 192.168.100.10" in routes.stdout, routes.stdout

    # shrink: its Node record deleted; the others drop its session (deconfigured, not just down) and routes
    remove = lab_cli(topology, state, "remove-host", "host3")
    assert remove.returncode == 0, remove.stderr + remove.stdout
    assert "3 hosts, 4 workloads" in remove.stdout
    assert "sessions between the other hosts: 12 kept, none reset" in remove.stdout
    for host in original:
        assert not set(HOST3) & set(peers(state, host))
        learned = netns.next_hops_by_prefix(f"{load(topology).prefix}{host}", "proto", "bird")
        assert "10.20.1.192/26" not in learned and all("192.168.100.13" not in v for v in learned.values())
    assert netns.list_namespaces(f"{load(topology).prefix}host3") == []
    check = lab_cli(topology, state, "check")
    assert check.returncode == 0, check.stdout
    assert "24/24 IPv4 pings answered" in check.stdout and "24/24 IPv6 pings answered" in check.stdout

    # across both changes: the same bgpd processes, and no session among the original hosts reset
    assert state_of(state)["pids"] == pids
    assert established(state, original) == sessions

    down = lab_cli(topology, state, "down")
    assert down.returncode == 0, down.stderr
    assert netns.list_namespaces(load(topology).prefix) == []
    assert not any(alive(p) for p in [*pids.values(), etcd_pid])
    assert not (state / "etcd").exists() and not (state / "state.json").exists()


def test_add_host_needs_a_lab_driven_by_etcd(etcd_lab: tuple[Path, Path]) -> None:
    topology, state = etcd_lab
    one_line_error(lab_cli(topology, state, "add-host", "host3"), "is not up")
    up = lab_cli(topology, state, "up", "--datastore", "none")  # the same topology, configs as files
    assert up.returncode == 0, up.stderr + up.stdout
    assert "datastore: etcd" not in up.stdout and "datastore" not in (state / "host0.yaml").read_text()
    one_line_error(lab_cli(topology, state, "add-host", "host3"), "add-host needs a lab driven by etcd")
    one_line_error(lab_cli(topology, state, "remove-host", "host2"), "remove-host needs a lab driven by etcd")
    rr = lab_cli(ROOT / "configs" / "lab-rr.yaml", state / "rr", "up", "--datastore", "etcd")
    one_line_error(rr, "a lab with route reflectors cannot be driven by etcd")
