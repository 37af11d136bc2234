"""The `bgpd` command line: `bgpd run -c FILE` (the daemon, foreground), `bgpd check -c FILE` and `bgpd lab`.

Exit codes: 0 success, 2 invalid configuration (one `FILE:LINE: key.path: message` line) or usage error
(one line, `bgpd.oneline.Parser`), 1 any other failure to start, 70 a bug (one line naming the file that
holds the traceback; in `bgpd run` the traceback is logged). Never a traceback on the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from bgpd import __version__
from bgpd import config as config_mod
from bgpd import log as log_mod
from bgpd.oneline import EXIT_BUG, Parser, describe, guard

if TYPE_CHECKING:
    from bgpd.datastore.follow import Follower

EXIT_CONFIG = 2


def _load(path: str) -> config_mod.Config | config_mod.ClusterFile | None:
    try:
        return config_mod.load_file(path)
    except config_mod.ConfigError as exc:
        print(f"bgpd: {exc}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    if isinstance(cfg, config_mod.ClusterFile):
        etcd = cfg.datastore.etcd
        assert etcd is not None
        from bgpd.datastore.etcd import DatastoreConfigError, read_tls_files

        try:
            read_tls_files(etcd)  # as `bgpd run` reads them before it connects
        except DatastoreConfigError as exc:
            print(f"bgpd: {cfg.source}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        print(
            f"# node {cfg.node_name}: the cluster part comes from the datastore "
            f"({cfg.datastore.type} {', '.join(etcd.endpoints)}, prefix {etcd.prefix}); local sections: "
            f"{', '.join(cfg.local) or 'none'}. `bgpctl show config` on the running daemon shows the "
            "derived configuration."
        )
        return 0
    sys.stdout.write(config_mod.dump(cfg))
    if cfg.node.subnet is None:
        print(_subnet_note(cfg))
    if not cfg.pools:
        print(NO_POOLS)
    return 0


NO_POOLS = (
    "# no pools: nothing will be announced or installed (only prefixes inside a pool are: Calico's IPPools)"
)


def _subnet_note(cfg: config_mod.Config) -> str:
    """What the daemon will take as the node's subnet (it decides ipip cross-subnet) when node.address
    has no prefix length: the subnet of the interface that holds the address here, if any."""
    from bgpd.kernel import address_network

    address = cfg.node.address
    try:
        found = address_network(address)
    except OSError as exc:
        return f"# node.address {address} has no prefix length; the interfaces cannot be read here: {exc}"
    if found is None:
        return (
            f"# node.address {address} has no prefix length and no interface here holds it: "
            "`bgpd run` would refuse to start here"
        )
    return f"# node.address {address} has no prefix length: subnet {found[1]} from interface {found[0]}"


def port_in_use(cfg: config_mod.Config) -> str | None:
    """The one line saying bgp.port is taken on a node address (another BGP daemon: BIRD, a second bgpd),
    or None. ExaBGP would exit at once and be restarted forever, the cause only in its log. The test
    socket binds as ExaBGP's listener does (SO_REUSEADDR) and is closed before ExaBGP starts."""
    for address in (cfg.node.address, cfg.node.address6):
        if address is None:
            continue
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((str(address), cfg.bgp.port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    return None  # not ours to judge here: ExaBGP reports it
                return (
                    f"bgpd: {cfg.source}: bgp.port {cfg.bgp.port} on {address} is in use by another program "
                    "(another BGP daemon? see `ss -ltnp`)"
                )
    return None


async def _run(
    cfg: config_mod.Config, node_interface: tuple[str, IPv4Network], follower: Follower | None = None
) -> None:
    from bgpd.daemon import Daemon  # imports the kernel side only when really running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    daemon = Daemon(cfg, node_interface, follower)
    tasks: set[asyncio.Task[object]] = set()

    def on_hup() -> None:  # SIGHUP = `bgpctl reload`
        task: asyncio.Task[object] = asyncio.create_task(daemon.reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await daemon.run(stop)


def cmd_run(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    runtime = loaded.runtime
    log_mod.setup(
        args.log_level or runtime.log_level, json_format=args.log_json or runtime.log_format == "json"
    )
    lock = _lock(loaded.runtime, loaded.source)
    if lock is None:
        return 1
    if isinstance(loaded, config_mod.ClusterFile):
        return _run_cluster(loaded, lock)
    cfg = loaded
    problem = _start_problem(cfg)
    if problem is not None:
        print(problem, file=sys.stderr)
        os.close(lock)
        return 1
    return _run_guarded(_run(cfg, _node_interface(cfg)))


def _node_interface(cfg: config_mod.Config) -> tuple[str, IPv4Network]:
    from bgpd.kernel import address_network

    found = address_network(cfg.node.address)
    assert found is not None, "checked by _start_problem"
    return found


def _start_problem(cfg: config_mod.Config) -> str | None:
    """The one line saying why bgpd cannot start with `cfg` on this host, or None."""
    from bgpd.kernel import address_network

    if address_network(cfg.node.address) is None:
        return (
            f"bgpd: {cfg.source}: node.address {cfg.node.address} is on no interface of this host "
            "(the sessions' source address; see `ip -4 addr`)"
        )
    return port_in_use(cfg)


def _run_guarded(main: Coroutine[Any, Any, int | None]) -> int:
    try:
        result = asyncio.run(main)
    except OSError as exc:
        logging.getLogger("bgpd").error("cannot run", extra={"kv": {"error": describe(exc)}})
        return 1
    except Exception:  # a bug: in the log with its traceback (the daemon's stderr is its log)
        logging.getLogger("bgpd").critical("stopped by a bug in bgpd", exc_info=True)
        return EXIT_BUG
    return result or 0


def _lock(runtime: config_mod.RuntimeConfig, source: str) -> int | None:
    """Root, and the runtime directory locked for this bgpd (its fd); None after saying why not."""
    if os.geteuid() != 0:
        print("bgpd: run needs root (netlink route changes, BGP port)", file=sys.stderr)
        return None
    from bgpd.runlock import AlreadyRunning, lock_runtime_dir

    try:
        return lock_runtime_dir(runtime.dir)
    except AlreadyRunning as exc:
        print(f"bgpd: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"bgpd: {source}: runtime.dir: {describe(exc)}", file=sys.stderr)
    return None


def _run_cluster(file: config_mod.ClusterFile, lock: int) -> int:
    """`bgpd run` when the cluster part comes from the datastore: wait for this node's first
    configuration (logging why while it waits), check it as a static one is checked, then run the
    daemon following the datastore."""
    from bgpd.datastore.etcd import DatastoreConfigError
    from bgpd.datastore.follow import Follower

    async def main() -> int | None:
        try:
            follower = Follower(file)
        except DatastoreConfigError as exc:
            print(f"bgpd: {file.source}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(follower.first())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, waiting.cancel)
        etcd = file.datastore.etcd
        assert etcd is not None
        log = logging.getLogger("bgpd")
        log.info(
            "waiting for this node's configuration from the datastore",
            extra={"kv": {"node": file.node_name, "endpoints": ",".join(etcd.endpoints)}},
        )
        try:
            cfg = await waiting
        except asyncio.CancelledError:
            await follower.close()
            log.info("stopped before the datastore gave a configuration")
            return 0
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        problem = _start_problem(cfg)
        if problem is not None:
            await follower.close()
            print(f"{problem} (from the datastore)", file=sys.stderr)
            return 1
        await _run(cfg, _node_interface(cfg), follower)
        return 0

    try:
        return _run_guarded(main())
    finally:
        os.close(lock)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="bgpd", description="BGP route distribution for layer-3 container hosts")
    p.add_argument("--version", action="version", version=f"bgpd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("-c", "--config", required=True, help="YAML configuration file")
    run.add_argument("--log-level", choices=config_mod.LOG_LEVELS, help="override runtime.log_level")
    run.add_argument("--log-json", action="store_true", help="log JSON lines instead of key=value")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="validate a config and print it normalized")
    check.add_argument("-c", "--config", required=True, help="YAML configuration file")
    check.set_defaults(func=cmd_check)
    from bgpd.lab.cli import add_parser as add_lab_parser

    add_lab_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "lab":
        from bgpd.lab.cli import EXPECTED as lab_errors

        return guard("bgpd lab", lambda: int(args.func(args)), expected=lab_errors)
    return guard("bgpd", lambda: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
