"""docker-compose.yml run for real (issue 16): the image built from the Dockerfile, the default lab's two
hosts as containers, clients of a bgpd reflector container, and a Prometheus container scraping all three.

No image comes from a container registry: the base is built here from Debian's packages (`mmdebstrap`:
bookworm with Python 3.11, iproute2, ping and Prometheus) and imported (`docker import`); bgpd goes into
the image from wheels built on this machine (`pip wheel`), so the build needs no network; the build
arguments are the compose file's own (BGPD_BASE, PROMETHEUS_BASE, BGPD_PIP_ARGS). Compose v2 is Debian
trixie's `docker-compose` (scripts/setup.sh puts it in .venv/bin). The engine runs in a namespace of its
own (conftest.py). Checked: every session Established (the reflector's two clients), a route added in
host0's container installed in host1's (`ip route show proto bird`), `bgpctl health --ready` ok in each
bgpd container, and Prometheus answering a query for `bgp_peer_state` with a series from each bgpd."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgpd.lab.netns import wait_for
from tests.container.conftest import Engine

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CONTEXT_FILES = (
    "Dockerfile",
    "Dockerfile.prometheus",
    ".dockerignore",
    "docker-compose.yml",
    "pyproject.toml",
    "README.md",
    "bgpd",
    "reflector",
    "configs",
)
BASE_PACKAGES = "python3,python3-venv,iproute2,iputils-ping,prometheus"
BASE_IMAGE = "bgpd-base:ci"
DEADLINE = 60.0
BGPD = {"host0": "192.168.100.10", "host1": "192.168.100.3", "rr": "192.168.100.2"}
PROMETHEUS = "192.168.100.50:9090"


def compose_command() -> list[str]:
    """Compose v2: .venv/bin/docker-compose (scripts/setup.sh), else the docker CLI's plugin."""
    here = Path(sys.executable).parent / "docker-compose"
    for argv in ([str(here)], ["docker-compose"], ["docker", "compose"]):
        if shutil.which(argv[0]) is None:
            continue
        version = subprocess.run([*argv, "version"], capture_output=True, text=True, check=False)
        if version.returncode == 0 and " v1." not in version.stdout and "version 1." not in version.stdout:
            return argv
    pytest.skip("Compose v2 not installed (bash scripts/setup.sh installs it in .venv/bin)")


class Project:
    """The compose project in its build context (a copy of the repository's files and the wheels)."""

    def __init__(self, engine: Engine, context: Path) -> None:
        self.engine = engine
        self.context = context
        self.compose = compose_command()
        self.env = {
            **engine.env,
            "BGPD_BASE": BASE_IMAGE,
            "PROMETHEUS_BASE": BASE_IMAGE,
            "BGPD_PIP_ARGS": "--no-index --find-links /src/wheels",
        }

    def run(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.compose, *args],
            cwd=self.context,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def exec(self, service: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "-T", service, *argv, timeout=60)

    def peers(self, service: str) -> list[dict[str, Any]]:
        result = self.exec(service, "bgpctl", "-c", f"/etc/bgpd/{service}.yaml", "show", "peers", "--json")
        return json.loads(result.stdout) if result.returncode == 0 else []


def _check(result: subprocess.CompletedProcess[str], what: str) -> str:
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def project(engine: Engine) -> Iterator[Project]:
    work = engine.workdir
    base = work / "base.tar"
    _check(
        subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(base)],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        ),
        "mmdebstrap (the base image from Debian's packages)",
    )
    _check(engine.docker("import", str(base), BASE_IMAGE), "docker import")
    base.unlink()
    context = work / "context"
    context.mkdir()
    for name in CONTEXT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, context / name)
    wheels = context / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _check(
        subprocess.run(
            [*pip, "wheel", str(context), "-w", str(wheels)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        ),
        "pip wheel (bgpd and its dependencies)",
    )
    _check(
        subprocess.run(
            [*pip, "download", "setuptools", "wheel", "-d", str(wheels)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        ),
        "pip download (the build backend, for the offline install)",
    )
    p = Project(engine, context)
    try:
        _check(p.run("up", "-d", "--build", timeout=900), "docker compose up")
        yield p
    finally:
        logs = p.run("logs", "--no-color", "--tail", "20", timeout=60).stdout
        down = p.run("down", "-t", "5", timeout=120)
        if down.returncode != 0:
            sys.stderr.write(f"compose down: {down.stderr}\n")
        sys.stderr.write(f"--- compose logs (last lines) ---\n{logs}\n")


def test_sessions_established_through_the_reflector(project: Project) -> None:
    def up() -> bool:
        rr = {p["address"]: p["state"] for p in project.peers("rr")}
        clients = all([p["state"] for p in project.peers(h)] == ["up"] for h in ("host0", "host1"))
        return rr == {BGPD["host0"]: "up", BGPD["host1"]: "up"} and clients

    wait_for(up, DEADLINE, "host0 and host1 Established with the reflector")
    assert {p["type"] for p in project.peers("rr")} == {"rr-client"}


def test_a_route_added_in_one_container_is_installed_in_the_other(project: Project) -> None:
    _check(
        project.exec("host0", "ip", "route", "add", "blackhole", "10.20.1.0/26", "proto", "80"),
        "ip route add",
    )

    def installed() -> bool:
        shown = project.exec("host1", "ip", "route", "show", "proto", "bird").stdout
        return f"10.20.1.0/26 via {BGPD['host0']}" in shown

    wait_for(installed, DEADLINE, "host0's block installed in host1 (proto bird)")
    assert (
        "10.20.1.0/26" not in project.exec("rr", "ip", "route", "show", "proto", "bird").stdout
    )  # no install


def test_every_bgpd_container_is_ready(project: Project) -> None:
    for service in BGPD:

        def ready(service: str = service) -> bool:
            result = project.exec(service, "bgpctl", "-c", f"/etc/bgpd/{service}.yaml", "health", "--ready")
            return result.returncode == 0 and result.stdout.startswith("ok:")

        wait_for(ready, DEADLINE, f"{service} ready")


def test_prometheus_scrapes_every_bgpd(project: Project) -> None:
    query = (
        "import json, sys, urllib.request\n"
        f"url = 'http://{PROMETHEUS}/api/v1/query?query=bgp_peer_state'\n"
        "print(json.dumps(json.load(urllib.request.urlopen(url, timeout=5))['data']['result']))\n"
    )

    def scraped() -> bool:
        result = project.engine.in_ns("python3", "-c", query)
        if result.returncode != 0:
            return False
        series = json.loads(result.stdout)
        instances = {s["metric"]["instance"] for s in series if s["value"][1] == "1"}
        return instances == {f"{name}:9179" for name in BGPD}

    wait_for(scraped, DEADLINE, "bgp_peer_state = 1 from host0, host1 and rr in Prometheus")
