"""Every `bgpd`, `bgpd lab` and `bgpctl` command in every wrong state that applies to it (issue 14): one line
on stderr naming what is wrong, a non-zero exit, nothing on stdout, never a traceback.

The commands and their arguments are read from the argparse parsers (`bgpd.cli.parser`, `bgpd.ctl.parser`),
so a new subcommand, or a new argument that takes a value, without a case below fails
`test_every_command_and_argument_has_a_wrong_state_case`. The states: no daemon (a missing, stale or fake
control socket; a stale pid file under a daemon that starts anyway), a daemon running but not ready (its one
peer never answers), a lab that is not up, one that is up (`up` twice, unknown names, a changed topology),
a workload removed twice, bad arguments (numbers, prefixes, addresses, missing files, directories, binary
files, files it may not read: run without CAP_DAC_OVERRIDE by `setpriv`), and not root (`unshare --user`,
where the uid is 65534). `bgpd run` cases run inside a namespace of their own, never the machine's.

One lab and one daemon serve every case (module fixtures); the cases of a state run in parallel.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bgpd import cli, ctl
from bgpd.lab import netns
from bgpd.lab.topology import load
from tests.e2e.conftest import Underlay

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(c) for c in ("ip", "ping", "unshare", "setpriv")),
        reason="needs root, iproute2, ping, unshare and setpriv",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
PARSERS = {"bgpd": cli.parser(), "bgpctl": ctl.parser()}
MODULES = {"bgpd": "bgpd", "bgpctl": "bgpd.ctl"}
WRAPPERS = {  # how a state is made for one process
    "not root": ["unshare", "--user"],  # geteuid() is 65534
    "no file access": ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"],  # root, mode 000 holds
}


@dataclass(frozen=True)
class Case:
    """One command line in one state: `expect` must be in its one line (on stderr; on stdout for a probe's
    verdict), its exit code `code`. `covers`: the arguments given a bad value ("bgpd lab up --timeout")."""

    state: str
    tool: str
    argv: tuple[str, ...]
    expect: str
    code: int = 1
    covers: tuple[str, ...] = ()
    ns: str | None = None  # a `places` key: run inside that namespace
    verdict: bool = False  # a probe's answer: the one line is on stdout, stderr stays empty

    def leaf(self) -> tuple[str, ...]:
        return leaf_of(self.tool, self.argv)


def case(state: str, command: str, expect: str, **kw: object) -> Case:
    tool, *argv = command.split()
    return Case(state, tool, tuple(argv), expect, **kw)  # type: ignore[arg-type]


ANY, DOWN, UP, REMOVED, DAEMON, BROKEN = (
    "anywhere",
    "lab not up",
    "lab up",
    "workload removed",
    "daemon not ready",
    "daemon config broken",
)
NOT_ROOT, NO_ACCESS = "not root", "no file access"
LAB_DOWN = "bgpd lab -t {down_topo} --state-dir {down_state}"
LAB_UP = "bgpd lab -t {up_topo} --state-dir {up_state}"
NO_CMD = "; see "  # the tail of every usage error

CASES: list[Case] = [
    # bgpd: the command itself, usage
    case(ANY, "bgpd", "missing command (one of: run, check, lab)", code=2),
    case(ANY, "bgpd nosuch", "invalid choice: 'nosuch'", code=2, covers=("bgpd command",)),
    # bgpd check
    case(ANY, "bgpd check", "required: -c/--config", code=2),
    case(
        ANY,
        "bgpd check -c {missing}",
        "{missing}:1: cannot read config: No such file",
        code=2,
        covers=("bgpd check --config",),
    ),
    case(ANY, "bgpd check -c {dir}", "cannot read config: Is a directory", code=2),
    case(ANY, "bgpd check -c {binary}", "{binary}:1: not a config file (not UTF-8 text)", code=2),
    case(ANY, "bgpd check -c {bad_config}", "{bad_config}:2: node: unknown key 'adress'", code=2),
    case(NO_ACCESS, "bgpd check -c {unreadable}", "cannot read config: Permission denied", code=2),
    # bgpd run (inside a namespace of its own)
    case(
        ANY,
        "bgpd run -c {missing}",
        "cannot read config: No such file",
        code=2,
        ns="empty_ns",
        covers=("bgpd run --config",),
    ),
    case(ANY, "bgpd run -c {binary}", "not a config file (not UTF-8 text)", code=2, ns="empty_ns"),
    case(ANY, "bgpd run -c {dir}", "cannot read config: Is a directory", code=2, ns="empty_ns"),
    case(
        ANY,
        "bgpd run -c {run_config} --log-level loud",
        "argument --log-level: invalid choice: 'loud'",
        code=2,
        ns="empty_ns",
        covers=("bgpd run --log-level",),
    ),
    case(ANY, "bgpd run -c {run_config}", "node.address 192.168.100.99 is on no interface", ns="empty_ns"),
    case(
        ANY,
        "bgpd run -c {file_runtime_config}",
        "{file_runtime_config}: runtime.dir: {plain}/run: Not a directory",
        ns="empty_ns",
    ),
    case(
        NO_ACCESS, "bgpd run -c {unreadable}", "cannot read config: Permission denied", code=2, ns="empty_ns"
    ),
    case(NOT_ROOT, "bgpd run -c {run_config}", "bgpd: run needs root", ns="empty_ns"),
    case(DAEMON, "bgpd run -c {nr_config}", "another bgpd (pid", ns="empty_ns"),
    # bgpd lab: topology files, usage
    case(ANY, "bgpd lab -t {down_topo}", "missing command (one of: up, down,", code=2),
    case(
        ANY, "bgpd lab -t {down_topo} nosuch", "invalid choice: 'nosuch'", code=2, covers=("bgpd lab action",)
    ),
    case(
        ANY,
        "bgpd lab -t {missing} up",
        "bgpd lab: {missing}: No such file or directory",
        code=2,
        covers=("bgpd lab --topology",),
    ),
    case(ANY, "bgpd lab -t {dir} check", "bgpd lab: {dir}: Is a directory", code=2),
    case(ANY, "bgpd lab -t {binary} up", "bgpd lab: {binary}: not a topology file (not UTF-8 text)", code=2),
    case(
        ANY,
        "bgpd lab -t {typo_topo} routes host0",
        "{typo_topo}:5: hostz: unknown key (did you mean 'hosts'?)",
        code=2,
    ),
    case(NO_ACCESS, "bgpd lab -t {unreadable} check", "bgpd lab: {unreadable}: Permission denied", code=2),
    case(
        ANY,
        "bgpd lab -t {down_topo} --state-dir {plain} up",
        "lab up failed while writing the state directory {plain}: it is a file, not a directory",
        covers=("bgpd lab --state-dir",),
    ),
    # bgpd lab up
    case(
        ANY,
        "bgpd lab up --timeout -5",
        "argument --timeout: '-5': seconds, 0 or more",
        code=2,
        covers=("bgpd lab up --timeout",),
    ),
    case(ANY, "bgpd lab up --timeout soon", "argument --timeout: 'soon' is not a number of seconds", code=2),
    case(ANY, "bgpd lab up --timeout nan", "seconds, 0 or more", code=2),
    case(NOT_ROOT, f"{LAB_DOWN} up", "bgpd lab: the lab needs root (network namespaces)"),
    case(
        UP,
        f"{LAB_UP} up",
        "is already up: `bgpd lab -t {up_topo} down` first, or `bgpd lab -t {up_topo} up --rebuild`",
    ),
    # bgpd lab down (on a lab that is not up it removes nothing and says so: not an error)
    case(NOT_ROOT, f"{LAB_UP} down", "bgpd lab: the lab needs root"),
    case(ANY, "bgpd lab -t {binary} down", "not a topology file", code=2),
    # bgpd lab reload
    case(DOWN, f"{LAB_DOWN} reload", "is not up (bgpd lab -t {down_topo} up)"),
    case(
        ANY,
        "bgpd lab reload --timeout -1",
        "seconds, 0 or more",
        code=2,
        covers=("bgpd lab reload --timeout",),
    ),
    case(
        UP,
        "bgpd lab -t {up_changed} --state-dir {up_state} reload",
        "changed beyond the pools' ipip modes: `bgpd lab up --rebuild` rebuilds the lab",
    ),
    case(NOT_ROOT, f"{LAB_UP} reload", "the lab needs root"),
    # bgpd lab check
    case(DOWN, f"{LAB_DOWN} check", "bgpd lab: the lab '{down_name}' is not up"),
    case(NOT_ROOT, f"{LAB_UP} check", "the lab needs root"),
    # bgpd lab routes
    case(DOWN, f"{LAB_DOWN} routes host0", "bgpd lab: the lab '{down_name}' is not up"),
    case(
        UP,
        f"{LAB_UP} routes nohost",
        "no host 'nohost' in {up_topo} (hosts: host0 host1)",
        covers=("bgpd lab routes host",),
    ),
    case(ANY, f"{LAB_DOWN} routes", "the following arguments are required: host", code=2),
    case(NOT_ROOT, f"{LAB_UP} routes host0", "the lab needs root"),
    # bgpd lab remove-workload
    case(DOWN, f"{LAB_DOWN} remove-workload 10.20.1.2", "the lab '{down_name}' is not up"),
    case(
        ANY,
        f"{LAB_DOWN} remove-workload 10.20.1",
        "argument address: '10.20.1' is not an IPv4 or IPv6 address",
        code=2,
        covers=("bgpd lab remove-workload address",),
    ),
    case(UP, f"{LAB_UP} remove-workload 10.99.0.1", "no workload 10.99.0.1 in {up_topo}"),
    case(REMOVED, f"{LAB_UP} remove-workload 10.20.1.3", "workload 10.20.1.3 is already removed"),
    case(REMOVED, f"{LAB_UP} remove-workload fd00:10:20:1::3", "workload fd00:10:20:1::3 is already removed"),
    case(NOT_ROOT, f"{LAB_UP} remove-workload 10.20.1.2", "the lab needs root"),
    # bgpd lab add-host / remove-host (a lab driven by etcd)
    case(DOWN, f"{LAB_DOWN} add-host host5", "the lab '{down_name}' is not up"),
    case(UP, f"{LAB_UP} add-host host5", "add-host needs a lab driven by etcd: the lab"),
    case(
        ANY,
        f"{LAB_DOWN} add-host Host_5",
        "argument name: 'Host_5': 1-10 lower-case letters or digits, starting with a letter",
        code=2,
        covers=("bgpd lab add-host name",),
    ),
    case(
        ANY,
        f"{LAB_DOWN} add-host host5 --workloads 0",
        "argument --workloads: '0': 1 or more",
        code=2,
        covers=("bgpd lab add-host --workloads",),
    ),
    case(ANY, f"{LAB_DOWN} add-host host5 --workloads many", "'many' is not a whole number", code=2),
    case(
        ANY,
        f"{LAB_DOWN} add-host host5 --timeout -1",
        "seconds, 0 or more",
        code=2,
        covers=("bgpd lab add-host --timeout",),
    ),
    case(NOT_ROOT, f"{LAB_UP} add-host host5", "the lab needs root"),
    case(DOWN, f"{LAB_DOWN} remove-host host1", "the lab '{down_name}' is not up"),
    case(UP, f"{LAB_UP} remove-host host1", "remove-host needs a lab driven by etcd"),
    case(
        ANY,
        f"{LAB_DOWN} remove-host ../x",
        "argument name: '../x': 1-10 lower-case letters or digits",
        code=2,
        covers=("bgpd lab remove-host name",),
    ),
    case(
        ANY,
        f"{LAB_DOWN} remove-host host1 --timeout soon",
        "'soon' is not a number of seconds",
        code=2,
        covers=("bgpd lab remove-host --timeout",),
    ),
    case(NOT_ROOT, f"{LAB_UP} remove-host host1", "the lab needs root"),
    case(
        ANY,
        f"{LAB_DOWN} up --datastore consul",
        "argument --datastore: invalid choice: 'consul'",
        code=2,
        covers=("bgpd lab up --datastore",),
    ),
    # bgpctl: the command itself, where the socket is
    case(ANY, "bgpctl", "missing command (one of: show, reload, health)", code=2),
    case(ANY, "bgpctl bogus", "invalid choice: 'bogus'", code=2, covers=("bgpctl command",)),
    case(ANY, "bgpctl -s {nosock} -c {bad_config} show peers", "not allowed with argument", code=2),
    case(
        ANY,
        "bgpctl -s {nosock} show status",
        "bgpd is not running (no control socket at {nosock})",
        covers=("bgpctl --socket",),
    ),
    case(ANY, "bgpctl -s {stale} show status", "bgpd is not running (nothing listens on {stale})"),
    case(ANY, "bgpctl -s {dir} show status", "{dir} is a directory, not bgpd's control socket"),
    case(ANY, "bgpctl -s {plain} show status", "{plain} is not a socket"),
    case(
        ANY,
        "bgpctl -c {missing} show status",
        "{missing}:1: cannot read config: No such file",
        covers=("bgpctl --config",),
    ),
    case(ANY, "bgpctl -c {binary} show status", "{binary}:1: not a config file (not UTF-8 text)"),
    case(ANY, "bgpctl -c {bad_config} show status", "{bad_config}:2: node: unknown key 'adress'"),
    case(ANY, "bgpctl -c {run_config} show status", "bgpd is not running (no control socket at"),
    case(NO_ACCESS, "bgpctl -c {unreadable} show status", "cannot read config: Permission denied"),
    # bgpctl show
    case(ANY, "bgpctl show", "missing what (one of: peers, routes, kernel, status, config)", code=2),
    case(ANY, "bgpctl -s {nosock} show config", "bgpd is not running"),
    case(ANY, "bgpctl -s {nosock} show config -4", "`show config` takes no -4 (only routes and kernel do)"),
    case(ANY, "bgpctl -s {nosock} show config 10.20.0.0/16", "`show config` takes no prefix"),
    case(ANY, "bgpctl show nothing", "invalid choice: 'nothing'", code=2, covers=("bgpctl show what",)),
    case(ANY, "bgpctl -s {nosock} show peers", "bgpd is not running"),
    case(ANY, "bgpctl -s {nosock} show peers 10.20.0.0/16", "`show peers` takes no prefix"),
    case(ANY, "bgpctl -s {nosock} show status -6", "`show status` takes no -6 (only routes and kernel do)"),
    case(ANY, "bgpctl -s {nosock} show kernel 10.20.0.0/16", "`show kernel` takes no prefix"),
    case(
        ANY,
        "bgpctl -s {nosock} show routes 10.20.1",
        "'10.20.1' is not a prefix",
        covers=("bgpctl show prefix",),
    ),
    case(ANY, "bgpctl -s {nosock} show routes 10.20.1.1/24", "'10.20.1.1/24' is not a prefix"),
    case(ANY, "bgpctl -s {nosock} show routes -6 10.20.1.0/24", "10.20.1.0/24 is an IPv4 prefix, not IPv6"),
    case(ANY, "bgpctl -s {nosock} show routes 10.20.1.0/24 extra", "unrecognized arguments: extra", code=2),
    case(DAEMON, "bgpctl -s {nr_sock} show routes 10.99.0.0/16", "bgpctl: unknown prefix 10.99.0.0/16"),
    case(DAEMON, "bgpctl -c {nr_config} show routes fd00:99::/64", "bgpctl: unknown prefix fd00:99::/64"),
    # bgpctl reload
    case(ANY, "bgpctl -s {nosock} reload", "bgpd is not running"),
    case(BROKEN, "bgpctl -s {nr_sock} reload", "reload refused: invalid config, nothing changed"),
    # bgpctl health
    case(ANY, "bgpctl health", "one of the arguments --live --ready is required", code=2),
    case(ANY, "bgpctl health --live --ready", "not allowed with argument --live", code=2),
    case(ANY, "bgpctl -s {stale} health --live", "bgpd is not running"),
    case(DAEMON, "bgpctl -s {nr_sock} health --ready", "FAIL: 0/1 sessions established", verdict=True),
]


# ---------------------------------------------------------------- the commands, from the parsers


def _subcommands(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _choice_positional(parser: argparse.ArgumentParser) -> argparse.Action | None:
    """A positional whose choices pick the command (`bgpctl show peers|routes|...`)."""
    return next((a for a in parser._actions if not a.option_strings and a.choices and a.nargs is None), None)


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Every command a user can type: subcommands down to the last level, and a positional's choices."""
    sub = _subcommands(parser)
    if sub is not None:
        for name, child in sub.choices.items():
            yield from leaves(child, (*path, name))
        return
    chooser = _choice_positional(parser)
    if chooser is not None and chooser.choices is not None:
        for choice in chooser.choices:
            yield (*path, str(choice))
        return
    yield path


def arguments(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[str]:
    """Every argument that takes a value, as `PATH NAME` (NAME: its long option, or its dest)."""
    for action in parser._actions:
        if action.nargs == 0 or isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        yield " ".join((*path, action.option_strings[-1] if action.option_strings else action.dest))
    sub = _subcommands(parser)
    for name, child in sub.choices.items() if sub is not None else ():
        yield from arguments(child, (*path, name))


def leaf_of(tool: str, argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command an argument list reaches (as `leaves` names it), as far as it gets."""
    parser = PARSERS[tool]
    path: tuple[str, ...] = (tool,)
    while (sub := _subcommands(parser)) is not None:
        name = next((t for t in argv if t in sub.choices), None)
        if name is None:
            return path
        parser, path = sub.choices[name], (*path, name)
    chooser = _choice_positional(parser)
    choice = next((t for t in argv if chooser is not None and t in (chooser.choices or ())), None)
    return (*path, choice) if choice is not None else path


def test_every_command_and_argument_has_a_wrong_state_case() -> None:
    commands = {leaf for tool, p in PARSERS.items() for leaf in leaves(p, (tool,))}
    assert ("bgpd", "lab", "remove-workload") in commands and ("bgpctl", "show", "routes") in commands
    covered = {c.leaf() for c in CASES}
    assert commands - covered == set(), "commands without a wrong-state case"
    names = {name for tool, p in PARSERS.items() for name in arguments(p, (tool,))}
    assert "bgpd lab up --timeout" in names and "bgpctl --socket" in names
    given = {name for c in CASES for name in c.covers}
    assert names - given == set(), "arguments never given a bad value"
    assert given - names == set(), "cases cover arguments the parsers do not have"


# ---------------------------------------------------------------- the states


def _copy_topology(tmp: Path, name: str, extra: str = "") -> Path:
    text = (ROOT / "configs" / "lab.yaml").read_text()
    lines = [f"name: {name}" if line.startswith("name:") else line for line in text.splitlines()]
    path = tmp / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The files every state uses (a missing one, a directory, a binary, an unreadable one, a stale socket,
    a bad config) and a namespace for `bgpd run` cases; more are added by the lab and daemon fixtures."""
    tmp = tmp_path_factory.mktemp("wrong")
    (tmp / "binary.yaml").write_bytes(b"\x00\x01\xff\xfe" * 8)
    (tmp / "unreadable.yaml").write_text("node: {name: h, address: 192.168.100.99, asn: 64512}\n")
    (tmp / "unreadable.yaml").chmod(0)
    (tmp / "plain").write_text("a file, not a directory or a socket\n")
    (tmp / "bad.yaml").write_text("node:\n  adress: 192.168.100.10\n")
    stale = tmp / "stale.ctl"
    with socket.socket(socket.AF_UNIX) as sock:  # bound, never listening, closed: what a killed bgpd leaves
        sock.bind(str(stale))
    run_config = {"node": {"name": "h", "address": "192.168.100.99", "asn": 64512}}
    run_config["runtime"] = {"dir": str(tmp / "run")}
    (tmp / "run.yaml").write_text(yaml.safe_dump(run_config))
    run_config["runtime"] = {"dir": str(tmp / "plain" / "run")}
    (tmp / "file-runtime.yaml").write_text(yaml.safe_dump(run_config))
    typo = tmp / "typo.yaml"
    typo.write_text("name: t\nunderlay: 192.168.100.0/24\nasn: 64512\npools: [10.20.0.0/16]\nhostz: []\n")
    down_name = "w" + secrets.token_hex(3)
    fabric = netns.Fabric(prefix=f"bgpdt{secrets.token_hex(3)}-")
    try:
        yield {
            "missing": str(tmp / "missing.yaml"),
            "dir": str(tmp),
            "binary": str(tmp / "binary.yaml"),
            "unreadable": str(tmp / "unreadable.yaml"),
            "plain": str(tmp / "plain"),
            "bad_config": str(tmp / "bad.yaml"),
            "stale": str(stale),
            "nosock": str(tmp / "none" / "bgpd.ctl"),
            "run_config": str(tmp / "run.yaml"),
            "file_runtime_config": str(tmp / "file-runtime.yaml"),
            "down_name": down_name,
            "down_topo": str(_copy_topology(tmp, down_name)),
            "down_state": str(tmp / "down-state"),
            "typo_topo": str(typo),
            "empty_ns": fabric.namespace("empty"),
            "tmp": str(tmp),
            "fabric": fabric.prefix,
        }
    finally:
        fabric.close()


@pytest.fixture(scope="module")
def lab_up(places: dict[str, str]) -> Iterator[dict[str, str]]:
    """One lab, up for every case that needs it; removed (and checked gone) at the end, also on failure."""
    tmp = Path(places["tmp"])
    name = "w" + secrets.token_hex(3)
    topology = _copy_topology(tmp, name)
    (tmp / "changed").mkdir()
    changed = _copy_topology(tmp / "changed", name)  # the same lab with one more workload: not a reload
    changed.write_text(changed.read_text().replace("[10.20.1.2]", "[10.20.1.2, 10.20.1.9]"))
    state = tmp / "up-state"
    up = [sys.executable, "-m", "bgpd", "lab", "-t", str(topology), "--state-dir", str(state)]
    try:
        result = subprocess.run([*up, "up"], capture_output=True, text=True, check=False, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        yield {**places, "up_topo": str(topology), "up_state": str(state), "up_changed": str(changed)}
    finally:
        subprocess.run([*up, "down"], capture_output=True, check=False, timeout=120)
        assert netns.list_namespaces(load(topology).prefix) == []


@pytest.fixture(scope="module")
def daemon(places: dict[str, str]) -> Iterator[dict[str, str]]:
    """One bgpd, running and answering but not ready: its only peer (192.168.100.99) never answers. Its
    runtime dir held a stale pid file and a stale control socket before it started: neither stops a start."""
    tmp = Path(places["tmp"]) / "daemon"
    fabric = netns.Fabric(prefix=f"bgpdt{secrets.token_hex(3)}-")
    try:
        h0 = Underlay(fabric, tmp).host("h0", 10)
        config = h0.write_config(
            bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": [h0.address, "192.168.100.99"]}}
        )
        run = Path(h0.config["runtime"]["dir"])
        run.mkdir(parents=True)
        (run / "bgpd.pid").write_text("999999\n")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(run / "bgpd.ctl"))
        h0.start_bgpd()
        netns.wait_for(lambda: h0.ctl("show", "status").returncode == 0, 30, "bgpd answers on its socket")
        yield {**places, "nr_config": str(config), "nr_sock": str(run / "bgpd.ctl")}
    finally:
        fabric.close()


# ---------------------------------------------------------------- running the cases


def failure(c: Case, places: dict[str, str]) -> str | None:
    """None if the case holds; else what went wrong, with the command and its output."""
    argv = [part.format(**places) for part in c.argv]
    command = [*WRAPPERS.get(c.state, []), sys.executable, "-m", MODULES[c.tool], *argv]
    if c.ns is not None:
        command = ["ip", "netns", "exec", places[c.ns], *command]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=60, cwd=places["tmp"]
    )
    expect = c.expect.format(**places)
    said, silent = (result.stdout, result.stderr) if c.verdict else (result.stderr, result.stdout)
    lines = said.splitlines()
    ok = (
        result.returncode == c.code
        and len(lines) == 1
        and expect in lines[0]
        and lines[0].startswith("FAIL: " if c.verdict else c.tool)
        and silent == ""
        and "Traceback" not in result.stderr + result.stdout
    )
    if ok:
        return None
    return (
        f"[{c.state}] {c.tool} {' '.join(argv)}: exit {result.returncode} (want {c.code}), "
        f"want one line with {expect!r}\n  stdout: {result.stdout!r}\n  stderr: {result.stderr!r}"
    )


def run_state(state: str, places: dict[str, str]) -> None:
    cases = [c for c in CASES if c.state == state]
    assert cases
    with ThreadPoolExecutor(max_workers=4) as pool:
        failed = [f for f in pool.map(lambda c: failure(c, places), cases) if f is not None]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("state", [ANY, NO_ACCESS, DOWN])
def test_commands_that_need_no_lab_or_daemon(state: str, places: dict[str, str]) -> None:
    run_state(state, places)


def test_commands_on_a_running_lab(lab_up: dict[str, str]) -> None:
    run_state(UP, lab_up)
    run_state(NOT_ROOT, lab_up)


def test_a_removed_workload_removed_again_and_the_lab_without_it(lab_up: dict[str, str]) -> None:
    """Removing is one line the second time; `check` leaves the workload out and `reload` does not wait for
    its routes (it waited for them until its deadline and failed)."""
    lab = [sys.executable, "-m", "bgpd", "lab", "-t", lab_up["up_topo"], "--state-dir", lab_up["up_state"]]
    removed = subprocess.run(
        [*lab, "remove-workload", "10.20.1.3"], capture_output=True, text=True, timeout=60
    )
    assert removed.returncode == 0, removed.stderr
    run_state(REMOVED, lab_up)
    check = subprocess.run([*lab, "check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "10.20.1.3" not in check.stdout, check.stdout + check.stderr
    reload = subprocess.run([*lab, "reload", "--timeout", "20"], capture_output=True, text=True, timeout=60)
    assert reload.returncode == 0, reload.stderr
    assert "10.20.1.3" not in reload.stdout and "2 hosts, 2 workloads" in reload.stdout, reload.stdout


def test_commands_on_a_daemon_that_is_not_ready(daemon: dict[str, str]) -> None:
    run_state(DAEMON, daemon)
    config = Path(daemon["nr_config"])
    good = config.read_text()
    config.write_text(good.replace("hold_time: 9", "hold_tme: 9"))
    try:
        run_state(BROKEN, daemon)
    finally:
        config.write_text(good)
