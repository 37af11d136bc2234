"""The benchmark harness (bench/): pure parts without root, and a smoke run of `python -m bench` as root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import agent, birdconf, profiling, report, scenarios

ROOT = Path(__file__).resolve().parents[2]
BIRD = shutil.which("bird") or "/usr/sbin/bird"


def test_percentile_interpolates() -> None:
    assert scenarios.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert scenarios.percentile([5.0], 90) == 5.0
    assert scenarios.percentile(list(map(float, range(11))), 90) == pytest.approx(9.0)


def test_agent_prefix_keys_round_trip() -> None:
    for prefix in ("10.1.2.3/32", "10.100.0.64/26", "0.0.0.0/0"):
        assert agent.format_key(agent.parse_prefix(prefix)) == prefix


def test_bulk_and_client_prefixes_are_unique_and_in_the_pool() -> None:
    bulk = scenarios.bulk_prefixes(100_000)
    assert len(set(bulk)) == 100_000 and bulk[0] == "10.64.0.0/32"
    routes = [p for i in range(50) for p in scenarios.client_routes(i, 200)]
    assert len(set(routes)) == 10_000
    assert all(p.startswith("10.") for p in routes)


@pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 not installed")
@pytest.mark.parametrize(
    "text",
    [
        birdconf.host("192.168.100.11", ["192.168.100.10"], "10.0.0.0/8", 64512),
        birdconf.host("192.168.100.10", ["192.168.100.11"], "10.0.0.0/8", 64512),
        birdconf.reflector(
            "192.168.100.2", ["192.168.100.10", "192.168.100.11"], "10.0.0.0/8", 64512, "1.0.0.1"
        ),
        birdconf.client(
            "192.168.100.10", "192.168.100.2", scenarios.client_routes(0, 3), "10.0.0.0/8", 64512
        ),
    ],
)
def test_bird_configs_parse(tmp_path: Path, text: str) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    proc = subprocess.run([BIRD, "-p", "-c", str(conf)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_mesh_passive_side_is_the_lower_address() -> None:
    low = birdconf.host("192.168.100.10", ["192.168.100.11"], "10.0.0.0/8", 64512)
    high = birdconf.host("192.168.100.11", ["192.168.100.10"], "10.0.0.0/8", 64512)
    assert "passive on" in low and "passive on" not in high


def test_report_summary_ratio_and_goal() -> None:
    results = {
        "date": "2026-11-25T12:00:00+00:00",
        "machine": {
            "nproc": 2,
            "cpu": "x",
            "mem_gib": 1,
            "kernel": "k",
            "bird": "2",
            "exabgp": "5",
            "python": "3.11",
        },
        "repeat": {"bulk10k": 3},
        "runs": {
            "bulk10k": {
                "bgpd": [{"add_s": 1.0}, {"add_s": 2.0}, {"add_s": 3.0}],
                "bird": [{"add_s": 4.0}, {"add_s": 4.0}],
            }
        },
        "errors": {},
        "notes": [],
    }
    rows = report.summarize(results)
    add = next(r for r in rows if r["metric"] == "add_s")
    assert add["bgpd"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert add["ratio"] == 0.5 and add["met"] is True
    md = report.markdown(results, rows)
    assert "| bulk 10k added → all installed | s | 2.00 (1.00–3.00) | 4.00 (4.00–4.00) | 0.50× |" in md


def test_profile_summary_counts_busy_samples(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "process 1;main (bgpd/cli.py);work (bgpd/x.py);hot (bgpd/y.py) 30\n"
        "process 1;main (bgpd/cli.py);work (bgpd/x.py) 10\n"
        "process 1;main (bgpd/cli.py);EpollSelector.select (selectors.py) 60\n"
    )
    s = profiling.summarize(raw)
    assert s["samples"] == 40 and s["idle"] == 60
    assert s["self"][0] == {"function": "hot (bgpd/y.py)", "samples": 30, "share": 0.75}


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0 or not Path(BIRD).exists(), reason="needs root and BIRD 2")
def test_bench_latency_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--scenarios",
            "latency",
            "--repeat",
            "1",
            "--samples",
            "3",
            "--results",
            str(tmp_path / "results"),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results" / "latest.json").read_text())
    for daemon in ("bgpd", "bird"):
        (run,) = data["runs"]["latency"][daemon]
        assert len(run["samples_add_ms"]) == 3 and run["lost"] == 0
    assert "latency add → installed, p50" in (tmp_path / "results" / "latest.md").read_text()
