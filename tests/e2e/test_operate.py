"""Operating a running bgpd: bgpctl (text and JSON), metrics after a known exchange, a real Prometheus
scraping it, health probes, live reload without flaps, invalid reload rejected."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import ASN, Host, Underlay
from tests.e2e.test_bird import BIRD, start_bird

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
METRICS = "127.0.0.1:9179"


def _mesh(underlay: Underlay, count: int, **overrides: object) -> list[Host]:
    hosts = [underlay.host(f"h{i}", 10 + i) for i in range(count)]
    nodes = [h.address for h in hosts]
    for h in hosts:
        h.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": nodes}}, **overrides)
        h.start_bgpd()
    return hosts


def _established(host: Host, peer: str) -> bool:
    result = host.ctl("show", "peers", "--json")
    if result.returncode != 0:
        return False
    return any(p["address"] == peer and p["state"] == "up" for p in json.loads(result.stdout))


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_bgpctl_commands_text_and_json(underlay: Underlay) -> None:
    h0, h1 = _mesh(underlay, 2)
    for p in ("10.20.1.0/26", "10.20.9.9/32"):
        (h0.add_block if p.endswith("/26") else h0.add_workload_route)(p)
    wait_for(lambda: len(h1.bird_routes()) == 2, CONVERGE, "h0's routes on h1")

    peers = h1.ctl_json("show", "peers")
    assert [(p["address"], p["state"], p["type"]) for p in peers] == [(h0.address, "up", "mesh")]
    assert (peers[0]["received"], peers[0]["accepted"], peers[0]["rejected"]) == (2, 2, {})
    text = h1.ctl("show", "peers").stdout
    assert re.search(rf"^{re.escape(h0.address)}\s+{ASN}\s+mesh\s+Established\s", text, re.M), text

    [route] = h1.ctl_json("show", "routes", "10.20.1.0/26")
    assert route["installed"] == [h0.address]
    assert [(p["from"], p["best"]) for p in route["paths"]] == [(h0.address, True)]
    text = h1.ctl("show", "routes", "10.20.1.0/26").stdout
    assert f"installed via {h0.address}" in text and f"* via {h0.address}" in text
    assert len(h1.ctl_json("show", "routes")) == 2
    # on the announcing side the prefix is local
    [local] = h0.ctl_json("show", "routes", "10.20.9.9/32")
    assert local["local"] is True and local["installed"] is None

    kernel = h1.ctl_json("show", "kernel")
    assert {o["prefix"] for o in kernel["owned"]} == {"10.20.1.0/26", "10.20.9.9/32"}
    kernel0 = h0.ctl_json("show", "kernel")
    assert kernel0["announced"] == ["10.20.1.0/26", "10.20.9.9/32"]
    assert "announced (2)" in h0.ctl("show", "kernel").stdout

    status = h1.ctl_json("show", "status")
    assert (status["node"], status["role"], status["sessions"]) == (
        "h1",
        "host",
        {"configured": 1, "established": 1},
    )
    assert status["exabgp"]["alive"] is True
    assert "role host" in h1.ctl("show", "status").stdout

    # errors: one clear line, exit 1
    unknown = h1.ctl("show", "routes", "10.99.0.0/16")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "bgpctl: unknown prefix 10.99.0.0/16")
    assert h1.bgpd is not None and h1.bgpd.stop() == 0
    gone = h1.ctl("show", "status")
    assert gone.returncode == 1 and gone.stderr.startswith("bgpctl: bgpd is not running")


@pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 (Debian bird2) not installed")
def test_control_socket_is_root_only(underlay: Underlay) -> None:
    [h0] = _mesh(underlay, 1)
    socket_path = Path(h0.config["runtime"]["dir"]) / "bgpd.ctl"
    wait_for(socket_path.exists, CONVERGE, "control socket")
    assert socket_path.stat().st_mode & 0o777 == 0o600
    # bgpctl -s needs only the standard library: run it as `nobody` with the system Python, from a copy of
    # the package that nobody can read (the checkout may be under a home only root reads)
    readable = Path(tempfile.mkdtemp(prefix="bgpdt-ctl-"))
    try:
        readable.chmod(0o755)
        repo = Path(__file__).resolve().parents[2]
        shutil.copytree(repo / "bgpd", readable / "bgpd", ignore=shutil.ignore_patterns("__pycache__"))
        for path in readable.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        denied = subprocess.run(
            ["/usr/bin/python3", "-m", "bgpd.ctl", "-s", str(socket_path), "show", "peers"],
            env={"PYTHONPATH": str(readable)},
            user="nobody",
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert denied.returncode == 1
    assert (
        denied.stderr.strip()
        == f"bgpctl: permission denied on {socket_path} (the control socket is root only)"
    )


@pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 (Debian bird2) not installed")
def test_metrics_count_a_known_exchange_and_rejections(underlay: Underlay) -> None:
    h0 = underlay.host("h0", 10)
    bird = underlay.host("bird", 20)
    h0.write_config(
        bgp={"hold_time": 9, "peers": [{"address": bird.address, "asn": ASN}]}, metrics={"listen": METRICS}
    )
    # BIRD sends 3 acceptable routes and 3 that bgpd must reject
    good = ["10.20.7.0/26", "10.20.7.64/26", "10.20.8.0/24"]
    bad = [
        "0.0.0.0/0",
        "172.16.0.0/24",
        "10.20.1.0/26",
    ]  # default, outside the pools, one h0 announces itself
    start_bird(bird, [h0.address], good + bad)
    h0.start_bgpd()
    h0.add_block("10.20.1.0/26")
    wait_for(lambda: set(h0.bird_routes()) == set(good), CONVERGE, "BIRD's acceptable routes installed on h0")

    def scrape() -> str:
        status, body = h0.http_get(f"http://{METRICS}/metrics")
        assert status == 200
        return body

    wait_for(
        lambda: _metric(scrape(), "bgp_routes_received_total", peer=bird.address) == 6, CONVERGE, "counts"
    )
    text = scrape()
    assert _metric(text, "bgp_peer_state", peer=bird.address, asn=str(ASN), type="peer") == 1
    assert _metric(text, "bgp_routes_accepted_total", peer=bird.address) == 3
    assert _metric(text, "bgp_routes_rejected_total", peer=bird.address, reason="default_route") == 1
    assert _metric(text, "bgp_routes_rejected_total", peer=bird.address, reason="not_in_pool") == 1
    assert _metric(text, "bgp_routes_rejected_total", peer=bird.address, reason="own_prefix") == 1
    assert _metric(text, "bgp_routes_advertised", peer=bird.address) == 1
    assert _metric(text, "bgpd_kernel_routes_installed") == 3
    assert _metric(text, "bgpd_kernel_routes_selected") == 1
    assert (_metric(text, "bgp_peer_updates_received_total", peer=bird.address) or 0) >= 1
    assert _metric(text, "bgpd_exabgp_restarts_total", reason="exited") == 0
    assert _metric(text, "bgpd_exabgp_restarts_total", reason="hung") == 0
    assert "bgpd_build_info{" in text and 'exabgp_version="5.0.15"' in text
    assert (_metric(text, "bgpd_install_latency_seconds_count") or 0) >= 1
    assert (_metric(text, "bgpd_export_latency_seconds_count") or 0) >= 1
    assert "0.0.0.0/0" not in json.dumps(h0.ctl_json("show", "kernel"))


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian prometheus not installed")
def test_a_real_prometheus_scrapes_bgpd(underlay: Underlay) -> None:
    h0, _ = _mesh(underlay, 2, metrics={"listen": METRICS})
    wait_for(lambda: _established(h0, "192.168.100.11"), CONVERGE, "session up")
    conf = h0.workdir / "prometheus.yml"
    conf.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: bgpd, static_configs: [{{targets: ['{METRICS}']}}]}}]\n"
    )
    h0.fabric.spawn(
        "prometheus",
        h0.ns,
        [
            "prometheus",
            f"--config.file={conf}",
            f"--storage.tsdb.path={h0.workdir / 'tsdb'}",
            "--web.listen-address=127.0.0.1:9090",
        ],
        str(h0.workdir / "prometheus.log"),
    )

    def series() -> list[dict[str, object]]:
        try:
            status, body = h0.http_get("http://127.0.0.1:9090/api/v1/query?query=bgp_peer_state")
        except Exception:
            return []
        return list(json.loads(body)["data"]["result"]) if status == 200 else []

    wait_for(lambda: len(series()) == 1, 60, "Prometheus to have scraped bgp_peer_state")
    [sample] = series()
    assert sample["metric"]["peer"] == "192.168.100.11"  # type: ignore[index]
    assert sample["metric"]["job"] == "bgpd"  # type: ignore[index]
    assert sample["value"][1] == "1"  # type: ignore[index]


def test_health_probes_follow_calicos_rule(underlay: Underlay) -> None:
    h0 = underlay.host("h0", 10)
    h1 = underlay.host("h1", 11)
    absent = "192.168.100.99"  # configured, never answers
    nodes = [h0.address, h1.address, absent]
    h0.write_config(
        bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": nodes}},
        metrics={"listen": METRICS},
        health={"startup_window": 3},
    )
    h1.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": [h0.address, h1.address]}})
    h0.start_bgpd()
    wait_for(lambda: h0.ctl("health", "--live").returncode == 0, CONVERGE, "liveness")
    # inside the start-up window every peer must be up: h1 is not even running yet
    ready = h0.ctl("health", "--ready")
    assert ready.returncode == 1 and "sessions established" in ready.stdout
    assert h0.http_get(f"http://{METRICS}/readyz")[0] == 503
    h1.start_bgpd()
    wait_for(lambda: _established(h0, h1.address), CONVERGE, "session to h1")
    # after the window one established session is enough (the absent peer never comes)
    wait_for(lambda: h0.ctl("health", "--ready").returncode == 0, CONVERGE, "ready after the window")
    assert h0.http_get(f"http://{METRICS}/readyz")[0] == 200
    assert h0.http_get(f"http://{METRICS}/livez") == (200, "ok\n")
    # the only live peer goes away: not ready any more
    assert h1.bgpd is not None
    h1.bgpd.signal(signal.SIGKILL)
    wait_for(lambda: h0.ctl("health", "--ready").returncode == 1, CONVERGE, "not ready without peers")


def test_reload_adds_and_removes_peers_without_flapping_the_others(underlay: Underlay) -> None:
    h0, h1, h2 = (underlay.host(f"h{i}", 10 + i) for i in range(3))
    for h in (h0, h1, h2):
        h.write_config(
            bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": [h0.address, h1.address, h2.address]}}
        )
    # h0 starts knowing only h1
    h0.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": [h0.address, h1.address]}})
    for h in (h0, h1, h2):
        h.start_bgpd()
    h2.add_block("10.20.3.0/26")
    h0.add_block("10.20.1.0/26")
    wait_for(lambda: _established(h0, h1.address), CONVERGE, "h0-h1 session")
    before = {p["address"]: p for p in h0.ctl_json("show", "peers")}

    h0.write_config(
        bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": [h0.address, h1.address, h2.address]}}
    )
    reload = h0.ctl("reload")
    assert reload.returncode == 0 and "1 peers added" in reload.stdout, reload.stdout + reload.stderr
    wait_for(lambda: "10.20.3.0/26" in h0.bird_routes(), CONVERGE, "h2's block on h0 after adding h2")
    wait_for(lambda: "10.20.1.0/26" in h2.bird_routes(), CONVERGE, "h0's block on h2 after adding h2")
    after = {p["address"]: p for p in h0.ctl_json("show", "peers")}
    # the unchanged session did not flap
    assert after[h1.address]["flaps"] == 0
    assert after[h1.address]["since"] == before[h1.address]["since"]

    # remove h2 with SIGHUP this time: its routes are withdrawn, h1 still untouched
    h0.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": [h0.address, h1.address]}})
    assert h0.bgpd is not None
    h0.bgpd.signal(signal.SIGHUP)
    wait_for(lambda: "10.20.3.0/26" not in h0.bird_routes(), CONVERGE, "h2's block withdrawn on h0")
    final = {p["address"]: p for p in h0.ctl_json("show", "peers")}
    assert set(final) == {h1.address}
    assert final[h1.address]["since"] == before[h1.address]["since"] and final[h1.address]["flaps"] == 0


def test_invalid_reload_changes_nothing_and_is_reported(underlay: Underlay) -> None:
    h0, h1 = _mesh(underlay, 2, metrics={"listen": METRICS})
    wait_for(lambda: _established(h0, h1.address), CONVERGE, "session")
    config = Path(h0.workdir / "bgpd.yaml")
    good = config.read_text()
    config.write_text(good.replace("hold_time: 9", "hold_tme: 9", 1))
    result = h0.ctl("reload")
    assert result.returncode == 1
    assert "invalid config, nothing changed" in result.stderr and "hold_tme" in result.stderr
    # `bgpctl -c` with that very file still reaches the daemon, which refuses (and logs and counts) it
    by_config = subprocess.run(
        [sys.executable, "-m", "bgpd.ctl", "-c", str(config), "reload"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert by_config.returncode == 1 and by_config.stderr.startswith("bgpctl: reload refused: invalid config")
    # a setting that needs a restart is refused as well
    config.write_text(good.replace("table: main", "table: 100"))
    refused = h0.ctl("reload")
    assert refused.returncode == 1 and "kernel.table changed: restart bgpd" in refused.stderr
    assert _established(h0, h1.address)
    assert h0.bgpd is not None and h0.bgpd.alive()
    _, text = h0.http_get(f"http://{METRICS}/metrics")
    assert _metric(text, "bgpd_config_reloads_total", result="failure") == 3
    assert _metric(text, "bgpd_config_last_reload_successful") == 0
    [peer] = h0.ctl_json("show", "peers")
    assert peer["flaps"] == 0
