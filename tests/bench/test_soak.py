"""The soak run (bench/soak.py, issue 14): its schedule and verdict arithmetic without root, and the
2-minute version of the soak itself (3 bgpd hosts, routes and sessions flapping) as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest

from bench import soak, soakstats
from bench.topo import Host, Topology
from bgpd.lab import netns

ROOT = Path(__file__).resolve().parents[2]
MIB = soakstats.MIB


def _sample(rss_mib: float, cpu_s: float, fds: int = 16) -> dict[str, Any]:
    return {
        "rss": {"bgpd": int(rss_mib * MIB)},
        "rss_total": int(rss_mib * MIB),
        "fds": {"bgpd": fds, "exabgp": 8},
        "cpu_total_s": cpu_s,
    }


Series = tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]


def _series(rss: list[float], cpu: list[float], fds_end: int = 16) -> Series:
    """Samples 30 s apart with these tree RSS (MiB) and cumulative CPU (s); the final fds given."""
    samples: list[dict[str, Any]] = [
        {"t": 30.0 * i, "round": i, "hosts": {"hA": _sample(m, c)}}
        for i, (m, c) in enumerate(zip(rss, cpu, strict=True))
    ]
    baseline: dict[str, dict[str, Any]] = samples[0]["hosts"]
    return samples, {"hA": _sample(rss[-1], cpu[-1], fds_end)}, baseline


def test_thirds_cover_both_ends() -> None:
    assert soakstats.thirds(9) == (range(3), range(6, 9))
    assert soakstats.thirds(5) == (range(1), range(4, 5))
    assert soakstats.thirds(1) == (range(1), range(1))


def test_verdict_flat_and_leaking() -> None:
    flat = soakstats.verdict(*_series([80, 81, 80.5, 81, 80.8, 81.2], [1, 2, 3, 4, 5, 6]))
    assert flat["rss_flat"] and flat["fds_flat"] and flat["cpu_flat"]
    h = flat["hosts"]["hA"]
    assert h["rss_growth_mib"] == pytest.approx(0.5) and h["cpu_per_min_first_s"] == pytest.approx(2.0)
    # 3 MiB a sample: the last third's median is 12 MiB above the first third's
    leak = soakstats.verdict(*_series([80, 83, 86, 89, 92, 95], [1, 2, 3, 4, 5, 6]))
    assert not leak["rss_flat"] and leak["hosts"]["hA"]["rss_growth_mib"] == pytest.approx(12.0)
    fds = soakstats.verdict(*_series([80] * 6, [1, 2, 3, 4, 5, 6], fds_end=17))
    assert fds["rss_flat"] and not fds["fds_flat"]
    # CPU per minute rising from 2 to 12 s/min: beyond 1.5 x 2 + 1
    cpu = soakstats.verdict(*_series([80] * 6, [1, 2, 3, 6, 11, 17]))
    assert not cpu["cpu_flat"] and cpu["hosts"]["hA"]["cpu_per_min_last_s"] == pytest.approx(11.0)


def test_diff_names_extras_missing_and_changed() -> None:
    a = {"10.0.0.1/32": ["192.168.100.10"], "10.0.0.2/32": ["192.168.100.10"], "10.0.0.3/32": ["x"]}
    b = {"10.0.0.2/32": ["192.168.100.10"], "10.0.0.3/32": ["y"], "10.0.0.4/32": ["z"]}
    assert soak._diff(a, b) == [
        "+10.0.0.1/32 ['192.168.100.10']",
        "-10.0.0.4/32 ['z']",
        "~10.0.0.3/32 ['x']|['y']",
    ]
    assert soak._diff(a, dict(a)) == []
    assert soak._norm("10.30.0.1") == "10.30.0.1/32" and soak._norm("10.40.0.0/26") == "10.40.0.0/26"


def test_schedule_same_mix_every_round_and_every_flap_kind_in_turn(tmp_path: Path) -> None:
    s = soak.Soak(cast(Topology, None), 7, soak.Params(), lambda _: None)
    for i, (name, octet) in enumerate(soak.HOSTS):
        s.hosts.append(Host(name, f"ns-{name}", f"192.168.100.{octet}", tmp_path))
        s.state[name] = soak.HostState(i)
    kinds = []
    for r in range(8):
        events = s.schedule(r)
        assert [e[0] for e in events] == sorted(e[0] for e in events)
        assert all(0 <= e[0] <= s.p.round_s for e in events)
        names = Counter(e[1] for e in events)
        assert names["bulk_add"] == names["bulk_del"] == 3 and names["single"] == 3 * s.p.singles
        adds = [e[0] for e in events if e[1] == "bulk_add"]
        assert max(adds) < min(e[0] for e in events if e[1] == "bulk_del")  # checkpoints hold no bulk
        flaps = [n for n in names if n.startswith("flap_") or n == "sighup"]
        assert len(flaps) == 1
        kinds.append(flaps[0])
    assert set(kinds[:4]) == {"flap_link", "flap_peer_reload", "flap_exabgp_kill", "sighup"}
    assert kinds[:4] == kinds[4:]
    st = soak.HostState(1)
    assert st.bulk_lines("add", 2).splitlines() == [
        "route add 10.31.0.0/32 dev cali0 proto boot scope link",
        "route add 10.31.0.1/32 dev cali0 proto boot scope link",
    ]
    assert st.bulk_lines("del", 300).splitlines()[-1] == "route del 10.31.1.43/32"
    assert st.block(1) == "10.41.1.0/26" and st.single_slot(0) == "10.31.100.1/32"


def test_cli_bad_input_is_one_line() -> None:
    for argv in (["--duration", "-5", "--results", "x"], ["--duration", "abc", "--results", "x"], []):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.soak", *argv], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("python -m bench.soak: error:")


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2")
def test_soak_two_minutes(tmp_path: Path) -> None:
    """The CI soak: 2 minutes of churn (after a warm-up round) through `bench.soak.run`."""
    result = soak.run(120.0, tmp_path / "results", seed=14, workdir=tmp_path / "work")
    v = result["verdict"]
    final = result["final"]
    assert final["converged"], final["hosts"]
    for name, h in final["hosts"].items():
        assert h["match"], (name, h)
        assert h["announced"] > 0 and h["routes"] > 0
    assert v["daemons_alive"]
    for name, h in v["hosts"].items():
        assert h["rss_growth_mib"] < soakstats.RSS_TOLERANCE_MIB, (name, h)
        assert h["fds_before"] == h["fds_after"], (name, h)
    assert v["rss_flat"] and v["fds_flat"] and v["flat"]
    events = result["events"]
    for kind in ("flap_link", "flap_peer_reload", "flap_exabgp_kill", "sighup"):
        assert events.get(kind, 0) >= 1, events
    assert events["link_up"] == events["flap_link"] and events["peer_restore"] == events["flap_peer_reload"]
    assert sum(result["exabgp_restarts"].values()) == events["flap_exabgp_kill"]
    # every round (and the warm-up) adds and withdraws a bulk batch on every host
    assert result["route_changes"] >= soak.Params().bulk * 2 * 3 * (result["rounds"] + 1)
    assert result["churn_s"] >= 120.0 and len(result["samples"]) == result["rounds"] + 2
    json_file, md_file = map(Path, result["files"])
    assert json_file.exists() and "**flat**" in md_file.read_text()
    assert netns.list_namespaces(result["namespace_prefix"]) == []
