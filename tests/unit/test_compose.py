"""docker-compose.yml checked statically (tests/container runs it for real): it parses, every file it
references exists, the image gets every package bgpd installs, every bgpd service runs a command whose
config `bgpd check` accepts, its hosts are the default lab's, and Prometheus scrapes every bgpd."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd import config
from bgpd.cli import parser
from bgpd.lab.topology import load as load_topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _host_config(service: dict[str, Any]) -> Path:
    """The repository file mounted at the path the service's command reads."""
    command = service["command"]
    target = command[command.index("-c") + 1]
    for volume in service.get("volumes", []):
        source, mounted = volume.split(":")[:2]
        if mounted == target:
            return ROOT / source
    raise AssertionError(f"{target} is not mounted from the repository")


def test_build_context_and_dockerfile_exist(compose: dict[str, Any]) -> None:
    for service in _bgpd_services(compose).values():
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_image_carries_every_package_bgpd_installs() -> None:
    """`pip install /src` in the image installs what pyproject's package search finds in the build context
    (`COPY . /src`): a package the context leaves out (reflector/ was never copied, once) makes `bgpd run`
    fail on import, so .dockerignore must not exclude one."""
    import fnmatch
    import tomllib

    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    wanted = {pattern.rstrip("*") for pattern in found["include"]}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY . /src" in dockerfile and "pip install" in dockerfile
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for package in wanted | {"pyproject.toml", "README.md", "configs"}:
        assert not any(fnmatch.fnmatch(package, pattern) for pattern in ignored), package
        assert (ROOT / package).exists(), package


def _bgpd_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from the bgpd Dockerfile (Prometheus has its own)."""
    return {
        n: s for n, s in compose["services"].items() if s.get("build", {}).get("dockerfile") == "Dockerfile"
    }


def test_every_service_runs_bgpd_with_a_valid_config(compose: dict[str, Any]) -> None:
    assert set(_bgpd_services(compose)) == {"host0", "host1", "rr"}
    for name, service in _bgpd_services(compose).items():
        args = parser().parse_args(service["command"])  # the image's entrypoint is `bgpd`
        assert args.command == "run"
        cfg = config.load(_host_config(service))
        assert cfg.node.name == name
        address = service["networks"]["underlay"]["ipv4_address"]
        assert cfg.node.address == IPv4Address(address)
        assert "NET_ADMIN" in service["cap_add"]
        assert service["sysctls"]["net.ipv4.ip_forward"] == "1"


def test_compose_hosts_are_the_default_lab_hosts(compose: dict[str, Any]) -> None:
    lab = load_topology(ROOT / "configs" / "lab.yaml")
    addresses = {n: s["networks"]["underlay"]["ipv4_address"] for n, s in _bgpd_services(compose).items()}
    assert {n: a for n, a in addresses.items() if n != "rr"} == {h.name: str(h.address) for h in lab.hosts}
    rr = config.load(_host_config(_bgpd_services(compose)["rr"]))
    assert rr.reflector is not None and {str(c) for c in rr.reflector.clients} == {
        str(h.address) for h in lab.hosts
    }
    subnet = compose["networks"]["underlay"]["ipam"]["config"][0]["subnet"]
    assert subnet == str(lab.underlay)


def test_prometheus_service_scrapes_every_bgpd_metrics_port(compose: dict[str, Any]) -> None:
    prom = compose["services"]["prometheus"]
    source = prom["volumes"][0].split(":")[0]
    scrape = yaml.safe_load((ROOT / source).read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    expected = []
    for name, service in _bgpd_services(compose).items():
        listen = config.load(_host_config(service)).metrics.listen
        assert listen is not None, f"{name} serves no metrics"
        expected.append(f"{name}:{listen[1]}")
    assert sorted(targets) == sorted(expected)


def test_grafana_dashboard_queries_metrics_bgpd_serves() -> None:
    import json
    import re

    dashboard = json.loads((ROOT / "configs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b(bgpd?_[a-z_]+)", e)}
    served = {
        "bgp_peer_state",
        "bgp_routes_received_total",
        "bgp_routes_accepted_total",
        "bgp_routes_rejected_total",
        "bgpd_kernel_routes_installed",
        "bgpd_routes_announced",
        "bgpd_install_latency_seconds_bucket",
        "bgpd_export_latency_seconds_bucket",
        "bgp_peer_flaps_total",
        "bgpd_exabgp_restarts_total",
        "bgpd_netlink_errors_total",
        "bgpd_kernel_resyncs_total",
        "bgpd_kernel_collisions_total",
    }
    assert names and names <= served, names - served
