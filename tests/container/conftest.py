"""A Docker engine that never touches this machine's own network namespace (issue 16).

`engine` (fixture, module scope): Debian's `dockerd` started inside a network namespace the test creates
(`bgpdtdock<hex>`), with its data root, exec root, pid file and socket in a temporary directory, and
`--iptables=false --ip-masq=false --ip6tables=false --userland-proxy=false`: its bridges, veths and
addresses exist only in that namespace, and nothing from it reaches anywhere else (the namespace has no
link out). `ip netns exec` mounts a fresh /sys, which hides the cgroup hierarchies dockerd needs: the
start script mounts them again (as the host has them, cgroup v1 controllers or one cgroup2) inside the
mount namespace `ip netns exec` made for dockerd, so the machine's mounts are untouched. Afterwards the
engine is stopped by its pid (SIGTERM, then SIGKILL), every process left in the namespace is ended by pid,
the namespace and the temporary directory are removed: also on failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bgpd.lab import netns
from bgpd.lab.netns import wait_for

READY_DEADLINE = 60.0  # seconds for dockerd to answer on its socket
STOP_DEADLINE = 20.0


@dataclass
class Engine:
    """A running dockerd: its namespace, socket and working directory."""

    ns: str
    socket: Path
    workdir: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment a docker client (or Compose) needs to reach this engine only."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def docker(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, check=False, timeout=timeout
        )

    def in_ns(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A command in the engine's network namespace (where the containers' networks are)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )


def _cgroup_mounts() -> str:
    """Shell lines that mount the host's cgroup hierarchies again under a fresh /sys."""
    lines = ["mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup"]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mountpoint = fields[4]
        if not mountpoint.startswith("/sys/fs/cgroup/") and mountpoint != "/sys/fs/cgroup":
            continue
        fstype = fields[fields.index("-") + 1]
        options = fields[fields.index("-") + 3]
        if fstype == "cgroup2":
            if mountpoint == "/sys/fs/cgroup":
                return "mount -t cgroup2 cgroup2 /sys/fs/cgroup"  # cgroup v2 alone
            lines.append(f"mkdir -p {mountpoint} && mount -t cgroup2 cgroup2 {mountpoint}")
        elif fstype == "cgroup":
            wanted = ",".join(o for o in options.split(",") if o not in ("rw", "ro")) or "none"
            lines.append(f"mkdir -p {mountpoint} && mount -t cgroup -o {wanted} cgroup {mountpoint}")
    return "\n".join(lines)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, dockerd)"
    missing = [c for c in ("dockerd", "docker", "mmdebstrap", "ip") if shutil.which(c) is None]
    if missing:
        return f"{', '.join(missing)} not installed (bash scripts/setup.sh installs them)"
    return None


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix="bgpdt-dock-"))
    ns = f"bgpdtdock{secrets.token_hex(3)}"
    netns.ip("netns", "add", ns)
    pid: int | None = None
    try:
        netns.ip("link", "set", "lo", "up", ns=ns)
        sock, pidfile = workdir / "docker.sock", workdir / "dockerd.pid"
        script = workdir / "start.sh"
        script.write_text(
            "#!/bin/sh\nset -e\n"
            f"{_cgroup_mounts()}\n"
            f"exec dockerd --data-root {workdir}/data --exec-root {workdir}/exec --pidfile {pidfile} "
            f"-H unix://{sock} --iptables=false --ip-masq=false --ip6tables=false --userland-proxy=false\n"
        )
        script.chmod(0o755)
        log = open(workdir / "dockerd.log", "ab")  # noqa: SIM115 - the child's
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, str(script)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        pid = proc.pid  # the script execs dockerd: the same process
        engine = Engine(ns, sock, workdir)

        def ready() -> bool:
            if proc.poll() is not None:
                tail = (workdir / "dockerd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"dockerd exited ({proc.returncode}):\n{tail}")
            return sock.exists() and engine.docker("version", timeout=10).returncode == 0

        wait_for(ready, READY_DEADLINE, "dockerd to answer on its socket")
        yield engine
    finally:
        if pid is not None:
            netns.stop_pid(pid, b"dockerd", STOP_DEADLINE)
        netns.remove_namespace(ns)  # and whatever still runs in it (shims, containers): all this engine's
        shutil.rmtree(workdir, ignore_errors=True)
