"""What `bgpd run` refuses at start, in one line (issue 14): a second daemon on the same runtime directory
(it names the first's pid), a node.address that no interface of the host holds, a metrics port in use, and
bgp.port held by another program."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bgpd.lab import netns
from tests.e2e.conftest import Underlay

pytestmark = pytest.mark.e2e


def run_once(ns: str, config: str) -> subprocess.CompletedProcess[str]:
    """`bgpd run` as a user starts it, expected to refuse at once (a deadline, not a wait)."""
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "bgpd", "run", "-c", config]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def test_a_second_daemon_on_the_same_runtime_dir_refuses_naming_the_first(underlay: Underlay) -> None:
    h = underlay.host("h0", 10)
    config = h.write_config()
    first = h.start_bgpd()
    netns.wait_for(lambda: h.ctl("show", "status").returncode == 0, 30, "the first bgpd answers")
    second = run_once(h.ns, str(config))
    assert second.returncode == 1 and "Traceback" not in second.stderr
    (line,) = second.stderr.strip().splitlines()
    runtime = h.config["runtime"]["dir"]
    assert line == (
        f"bgpd: another bgpd (pid {first.pid}) runs with runtime.dir {runtime}; stop it or give this one "
        "another runtime.dir"
    )
    assert first.alive and h.ctl("show", "status").returncode == 0  # the first one is untouched


def test_a_node_address_on_no_interface_is_one_line(underlay: Underlay) -> None:
    h = underlay.host("h0", 10)
    config = h.write_config(node={"name": "h0", "address": "192.168.100.99", "asn": 64512})
    result = run_once(h.ns, str(config))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"bgpd: {config}: node.address 192.168.100.99 is on no interface of this host (the sessions' "
        "source address; see `ip -4 addr`)"
    )


def test_a_metrics_port_in_use_is_one_line_naming_the_key(underlay: Underlay) -> None:
    h = underlay.host("h0", 10)
    h.write_config(metrics={"listen": "127.0.0.1:9179"})
    first = h.start_bgpd()
    netns.wait_for(lambda: h.ctl("show", "status").returncode == 0, 30, "the first bgpd answers")
    # a second daemon (its own runtime dir) asking for the same metrics port
    second = h.workdir / "second.yaml"
    text = (h.workdir / "bgpd.yaml").read_text().replace(str(h.workdir / "run"), str(h.workdir / "run2"))
    text = text.replace("log_level: debug", "log_level: info").replace(
        "hold_time: 9", "hold_time: 9\n  port: 1179"
    )
    second.write_text(text)
    result = run_once(h.ns, str(second))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "metrics.listen 127.0.0.1:9179: address already in use" in line, line
    assert "('127.0.0.1', 9179)" not in line
    assert first.alive


def test_a_bgp_port_held_by_another_program_is_one_line(underlay: Underlay) -> None:
    h = underlay.host("h0", 10)
    config = h.write_config()
    # another BGP daemon's listener on the wildcard address, as BIRD's would be
    holder = h.fabric.spawn(
        "port-holder",
        h.ns,
        [sys.executable, "-c", HOLD_PORT, "179"],
        str(h.workdir / "holder.log"),
    )
    netns.wait_for(lambda: (h.workdir / "holder.log").read_text().strip() == "listening", 30, "the holder")
    result = run_once(h.ns, str(config))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"bgpd: {config}: bgp.port 179 on {h.address} is in use by another program (another BGP daemon? "
        "see `ss -ltnp`)"
    )
    assert holder.alive
    assert not (h.workdir / "run" / "exabgp.log").exists()  # refused before ExaBGP ever started


HOLD_PORT = """
import socket, sys, time
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(3600)
"""
