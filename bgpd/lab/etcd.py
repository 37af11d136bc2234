"""A real etcd (Debian's etcd-server) for the lab and the tests, and the writes made to it "by the cluster".

The server. `argv` is the command line of one etcd member listening on `ADDRESS:2379` (clients) and
`ADDRESS:2380` (peers) with its data in a directory of ours; `wait_ready` waits, with a deadline, for its
"serving client traffic" log line. Two ways to run it:
- `EtcdServer` (the tests, `tests/datastore/conftest.py`): a child of the test process in a namespace the
  test created (`bgpd.lab.netns.Fabric`), stopped by pid; optional TLS with client certificates
  (`make_certs`: a throw-away CA made with `openssl`); `restart()` starts it again on the same data.
- `start_detached` (the lab, `bgpd lab up --datastore etcd`): a session of its own, so it outlives the
  `bgpd lab` command; the lab records its pid and ends it by pid on `down` (`MARKER` tells it from a reused
  pid).

The writes. gRPC dials from its own threads, which do not follow a `setns` of the caller's thread, so a
client must run inside a namespace that reaches etcd: `apply(ns, endpoint, ops)` runs this module there
(`ip netns exec NS python -m bgpd.lab.etcd ENDPOINT`) with the operations as JSON lines on stdin:
`{"op": "put", "key": K, "value": V}`, `{"op": "delete", "key": K}`, `{"op": "list", "prefix": P}`; it
answers one JSON line per operation (`{"revision": N}`, list: `{"revision": N, "items": {key: value}}`) and
exits 0, or prints one line on stderr and exits 1. The client is etcd3aio, as bgpd's own
(`bgpd.datastore.etcd`); etcd v3's KV API (put, delete range, range).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bgpd.lab import netns
from bgpd.lab.netns import Fabric, Process, wait_for

CLIENT_PORT = 2379
PEER_PORT = 2380
READY_DEADLINE = 30.0  # seconds for etcd to serve clients after it starts
READY_LINE = "serving client traffic"  # etcd's log line once its client listener is up
MARKER = b"etcd"  # in /proc/PID/cmdline of the etcd the lab started
CLIENT_TIMEOUT = 30.0  # seconds for one `apply` (a Python start and a few requests)
REQUEST_TIMEOUT = 5.0  # seconds for each request of `apply`


class EtcdError(RuntimeError):
    """etcd did not start, or a write was refused: one line naming what and where to look."""


def client_url(address: str, tls: bool = False) -> str:
    return f"{'https' if tls else 'http'}://{address}:{CLIENT_PORT}"


def argv(name: str, data_dir: Path, address: str, certs: Path | None = None) -> list[str]:
    """The command line of a one-member cluster `name` on `address` (clients on 2379, peers on 2380), data
    in `data_dir`, logs (zap) on stderr. With `certs` (`make_certs`' directory): https only, clients must
    show a certificate signed by that CA."""
    url = client_url(address, certs is not None)
    peer = f"http://{address}:{PEER_PORT}"
    out = [
        "etcd",
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={name}={peer}",
        "--logger=zap",
        "--log-outputs=stderr",
    ]
    if certs is not None:
        out += [
            f"--cert-file={certs / 'server.pem'}",
            f"--key-file={certs / 'server.key'}",
            f"--trusted-ca-file={certs / 'ca.pem'}",
            "--client-cert-auth",
        ]
    return out


def wait_ready(log: Path, exited: Callable[[], str | None], deadline: float = READY_DEADLINE) -> None:
    """Until etcd's log shows READY_LINE. `exited()` returns None while etcd runs, else a line saying how
    it ended (raised as EtcdError at once); TimeoutError after `deadline` seconds."""

    def ready() -> bool:
        why = exited()
        if why is not None:
            raise EtcdError(f"etcd {why}; read {log}")
        try:
            return READY_LINE in log.read_text(errors="replace")
        except FileNotFoundError:
            return False

    wait_for(ready, deadline, f"etcd to serve client requests (log {log})")


class EtcdServer:
    """One etcd member in namespace `ns` at `address`, a child of this process (`fabric` stops it by pid if
    `stop` is not called), data and logs in `workdir`."""

    def __init__(
        self, fabric: Fabric, ns: str, address: str, workdir: Path, tls: bool = False, name: str = "bgpdtest"
    ) -> None:
        self.fabric = fabric
        self.ns = ns
        self.address = address
        self.workdir = workdir
        self.name = name
        self.data_dir = workdir / "data"
        self.process: Process | None = None
        self.starts = 0
        self.certs = make_certs(workdir / "certs", address) if tls else None

    @property
    def client_url(self) -> str:
        return client_url(self.address, self.certs is not None)

    def start(self) -> None:
        """Start it and wait for it to serve clients (EtcdError if it exits, TimeoutError)."""
        self.starts += 1
        log = self.workdir / f"etcd-{self.starts}.log"
        command = argv(self.name, self.data_dir, self.address, self.certs)
        self.process = proc = self.fabric.spawn(f"etcd-{self.starts}", self.ns, command, str(log))

        def exited() -> str | None:
            code = proc.popen.poll()
            return None if code is None else f"exited ({code}):\n{proc.log_tail()}"

        wait_ready(log, exited)

    def stop(self) -> None:
        """SIGTERM by pid (SIGKILL after 10 s) and wait for it."""
        if self.process is not None:
            self.process.stop()
            self.fabric.processes.remove(self.process)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def make_certs(directory: Path, address: str) -> Path:
    """A throw-away CA, a server certificate for IP `address` and a client certificate (CN client), EC P-256,
    made with `openssl` in `directory`: ca.pem, server.pem/.key, client.pem/.key."""
    directory.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=bgpd-test-ca"
    )
    for name, ext in (
        ("server", f"subjectAltName=IP:{address}\nextendedKeyUsage=serverAuth,clientAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (directory / f"{name}.ext").write_text(ext)
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        sign = ["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
        openssl("x509", "-req", "-in", f"{name}.csr", "-out", f"{name}.pem", *sign, "-extfile", f"{name}.ext")
    return directory


# ------------------------------------------------------------------------------------------ the lab's etcd


def start_detached(ns: str, address: str, data_dir: Path, log: Path, name: str = "bgpdlab") -> int:
    """etcd in namespace `ns` on `address`, in a session of its own (it outlives the caller); returns its
    pid once it serves clients. On failure (EtcdError, TimeoutError) it is stopped first."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv(name, data_dir, address)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def exited() -> str | None:
        code = proc.poll()
        return None if code is None else f"exited ({code})"

    try:
        wait_ready(log, exited)
    except (EtcdError, TimeoutError):
        stop(proc.pid)
        raise
    return proc.pid


def running(pid: int) -> bool:
    """Does `pid` still run an etcd (pids can be reused)?"""
    return netns.runs(pid, MARKER)


def stop(pid: int, timeout: float = 10.0) -> None:
    """End the etcd the lab started, by pid: SIGTERM, then SIGKILL after `timeout` seconds; nothing if that
    pid no longer runs etcd."""
    netns.stop_pid(pid, MARKER, timeout)


# ------------------------------------------------------------------------------------------ the writes


def apply(ns: str, endpoint: str, ops: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """Run `ops` (see the module's docstring) in order against `endpoint` from namespace `ns`; returns one
    answer per operation. EtcdError with etcd's or the client's reason."""
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "bgpd.lab.etcd", endpoint],
        input="".join(json.dumps(op) + "\n" for op in ops),
        capture_output=True,
        text=True,
        check=False,
        timeout=CLIENT_TIMEOUT,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        raise EtcdError(f"etcd at {endpoint} (from {ns}): {lines[-1]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


async def _run(endpoint: str, ops: list[dict[str, str]]) -> list[dict[str, Any]]:
    import etcd3aio  # only here: the lab's own process never loads gRPC

    client = etcd3aio.Etcd3Client([endpoint.split("://", 1)[-1]], rpc_max_attempts=3)
    await client.connect()
    kv = client.kv
    assert kv is not None  # set by connect()
    out: list[dict[str, Any]] = []
    try:
        for op in ops:
            kind = op.get("op")
            if kind == "put":
                reply = await kv.put(op["key"], op["value"], timeout=REQUEST_TIMEOUT)
                out.append({"revision": reply.header.revision})
            elif kind == "delete":
                reply = await kv.delete(op["key"], timeout=REQUEST_TIMEOUT)
                out.append({"revision": reply.header.revision, "deleted": reply.deleted})
            elif kind == "list":
                key = op["prefix"].encode()
                reply = await kv.get(key, etcd3aio.prefix_range_end(key), timeout=REQUEST_TIMEOUT)
                items = {bytes(kv.key).decode(): bytes(kv.value).decode() for kv in reply.kvs}
                out.append({"revision": reply.header.revision, "items": items})
            else:
                raise ValueError(f"unknown operation {kind!r} (put, delete, list)")
    finally:
        await client.close()
    return out


def main(args: list[str] | None = None) -> int:
    """`python -m bgpd.lab.etcd ENDPOINT` with operations as JSON lines on stdin (see `apply`)."""
    words = sys.argv[1:] if args is None else args
    if len(words) != 1:
        print("usage: python -m bgpd.lab.etcd ENDPOINT < operations (JSON lines)", file=sys.stderr)
        return 2
    try:
        ops = [json.loads(line) for line in sys.stdin if line.strip()]
        answers = asyncio.run(_run(words[0], ops))
    except Exception as exc:  # one line for the caller, whatever gRPC or the input raised
        detail = getattr(exc, "details", None)
        text = detail() if callable(detail) else str(exc)
        print(f"{type(exc).__name__}: {' '.join(str(text).split())}", file=sys.stderr)
        return 1
    for answer in answers:
        print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
