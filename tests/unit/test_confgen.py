"""Tests for bgpd.exabgp.confgen: the ExaBGP configuration text and environment bgpd generates."""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from bgpd.exabgp.confgen import PROCESS_NAME, Session, Speaker, bridge_command, environment, render

SOCKET = "/run/bgpd/exabgp.sock"
SPEAKER = Speaker(
    router_id=IPv4Address("192.168.200.2"),
    local_address=IPv4Address("192.168.200.2"),
    asn=64512,
    listen_port=1179,
    graceful_restart=240,
)
ACTIVE = Session(address=IPv4Address("192.168.200.1"), asn=64512)
PASSIVE = Session(
    address=IPv4Address("192.168.200.3"),
    asn=64513,
    port=1790,
    passive=True,
    hold_time=30,
    password="s3cret",
    description="rack 3 tor",
)


def blocks(text: str) -> dict[str, str]:
    """Each `neighbor X { ... }` block's body by address (blocks end at a '}' in column 0)."""
    found = re.findall(r"^neighbor (\S+) \{\n(.*?)^\}", text, flags=re.S | re.M)
    return dict(found)


def settings_of(body: str) -> dict[str, str]:
    """The `key value;` lines directly inside a neighbor block (4-space indent)."""
    return dict(re.findall(r"^    ([a-z0-9-]+) (.*);$", body, flags=re.M))


def test_one_block_per_session() -> None:
    text = render(SPEAKER, [ACTIVE, PASSIVE], SOCKET)
    assert list(blocks(text)) == ["192.168.200.1", "192.168.200.3"]
    assert text.count("neighbor ") == 2


def test_no_sessions_no_blocks() -> None:
    text = render(SPEAKER, [], SOCKET)
    assert blocks(text) == {}
    assert f"process {PROCESS_NAME} {{" in text


def test_active_session_settings() -> None:
    s = settings_of(blocks(render(SPEAKER, [ACTIVE], SOCKET))["192.168.200.1"])
    assert s["router-id"] == "192.168.200.2"
    assert s["local-address"] == "192.168.200.2"
    assert s["local-as"] == "64512"
    assert s["peer-as"] == "64512"
    assert s["hold-time"] == "90"
    assert s["passive"] == "false"
    assert s["connect"] == "179"
    assert s["adj-rib-out"] == "true"
    assert s["manual-eor"] == "true"
    assert s["description"] == '"bgpd session 192.168.200.1"'
    assert "md5-password" not in s


def test_local_asn_per_session() -> None:
    """Calico's localASNumber: ExaBGP's local-as for that neighbor only (the OPEN carries it)."""
    tor = Session(address=IPv4Address("192.168.200.1"), asn=65001, local_asn=64600)
    text = render(SPEAKER, [tor, PASSIVE], SOCKET)
    assert settings_of(blocks(text)["192.168.200.1"])["local-as"] == "64600"
    assert settings_of(blocks(text)["192.168.200.3"])["local-as"] == "64512"


def test_passive_session_settings() -> None:
    s = settings_of(blocks(render(SPEAKER, [ACTIVE, PASSIVE], SOCKET))["192.168.200.3"])
    assert s["passive"] == "true"
    assert s["peer-as"] == "64513"
    assert s["hold-time"] == "30"
    assert s["connect"] == "1790"
    assert s["md5-password"] == '"s3cret"'
    assert s["description"] == '"rack 3 tor"'
    assert s["adj-rib-out"] == "true"
    assert s["manual-eor"] == "true"


def test_empty_password_means_none() -> None:
    text = render(SPEAKER, [Session(IPv4Address("192.168.200.1"), 64512, password="")], SOCKET)
    assert "md5-password" not in text


def test_password_only_in_its_own_block() -> None:
    b = blocks(render(SPEAKER, [PASSIVE, ACTIVE], SOCKET))
    assert "md5-password" in b["192.168.200.3"]
    assert "md5-password" not in b["192.168.200.1"]


def test_capabilities_family_and_api() -> None:
    body = blocks(render(SPEAKER, [ACTIVE], SOCKET))["192.168.200.1"]
    assert "graceful-restart 240;" in body
    assert "route-refresh true;" in body
    assert re.search(r"family \{\s*ipv4 unicast;\s*\}", body)
    assert f"processes [ {PROCESS_NAME} ];" in body
    assert "neighbor-changes;" in body
    assert re.search(r"receive \{\s*parsed;\s*open;\s*update;\s*notification;\s*\}", body)


def test_process_stanza_runs_bridge() -> None:
    text = render(SPEAKER, [ACTIVE], SOCKET)
    m = re.search(r"^process (\S+) \{\n    run (.*);\n    encoder json;\n\}", text, flags=re.M)
    assert m is not None
    assert m.group(1) == PROCESS_NAME
    assert m.group(2) == bridge_command(SOCKET)
    assert shlex.split(m.group(2)) == [sys.executable, "-m", "bgpd.exabgp.bridge", SOCKET]


def test_bridge_command_quotes_socket_path() -> None:
    assert shlex.split(bridge_command("/tmp/a b/sock")) == [
        sys.executable,
        "-m",
        "bgpd.exabgp.bridge",
        "/tmp/a b/sock",
    ]


def test_braces_balanced() -> None:
    text = render(SPEAKER, [ACTIVE, PASSIVE], SOCKET)
    assert text.count("{") == text.count("}")


def test_environment() -> None:
    env = environment(SPEAKER)
    assert env["exabgp_tcp_bind"] == "192.168.200.2"
    assert env["exabgp_tcp_port"] == "1179"
    assert env["exabgp_daemon_daemonize"] == "false"
    assert env["exabgp_log_level"] == "INFO"
    assert env["exabgp_api_ack"] == "false"
    assert env["exabgp_reactor_speed"] == "10.0"  # idle wake-ups every 100 ms, not 10 ms
    assert all(isinstance(v, str) for v in env.values())
    assert all(k.startswith("exabgp_") for k in env)
    assert environment(SPEAKER, "DEBUG")["exabgp_log_level"] == "DEBUG"


# ------------------------------------------------------------------ against ExaBGP 5.0.15's own parser


@pytest.fixture(scope="module")
def exabgp_parse() -> Iterator[Any]:
    import exabgp  # noqa: F401  # a hard dependency: a failed import fails, never skips
    from exabgp.configuration.configuration import Configuration
    from exabgp.environment import getenv
    from exabgp.logger import log

    log.init(getenv())

    def parse(path: Path) -> Any:
        conf = Configuration([str(path)])
        assert conf.reload(), conf.error
        return conf

    yield parse


def _write(tmp_path: Path, sessions: list[Session], socket: str = SOCKET) -> Path:
    path = tmp_path / "exabgp.conf"
    path.write_text(render(SPEAKER, sessions, socket))
    return path


def test_exabgp_accepts_rendered_config(tmp_path: Path, exabgp_parse: Any) -> None:
    conf = exabgp_parse(_write(tmp_path, [ACTIVE, PASSIVE]))
    assert conf.processes[PROCESS_NAME]["run"] == [sys.executable, "-m", "bgpd.exabgp.bridge", SOCKET]
    assert conf.processes[PROCESS_NAME]["encoder"] == "json"
    neighbors = {str(n["peer-address"]): n for n in conf.neighbors.values()}
    assert set(neighbors) == {"192.168.200.1", "192.168.200.3"}
    active, passive = neighbors["192.168.200.1"], neighbors["192.168.200.3"]
    assert (active["passive"], passive["passive"]) == (False, True)
    assert (active["peer-as"], passive["peer-as"]) == (64512, 64513)
    assert (active["hold-time"], passive["hold-time"]) == (90, 30)
    assert (active["connect"], passive["connect"]) == (179, 1790)
    assert (active["md5-password"], passive["md5-password"]) == (None, "s3cret")
    assert passive["description"] == "rack 3 tor"
    for n in (active, passive):
        assert n["adj-rib-out"] is True
        assert n["manual-eor"] is True
        assert str(n["router-id"]) == "192.168.200.2"
        assert n["local-as"] == 64512
        assert n["capability"]["graceful-restart"] == 240
        assert n.api["processes"] == [PROCESS_NAME]
        assert n.api["receive-update"] == [PROCESS_NAME]


def test_graceful_restart_0_reaches_exabgp_as_off(tmp_path: Path, exabgp_parse: Any) -> None:
    """bgp.graceful_restart 0 disables graceful restart (README); ExaBGP reads `graceful-restart 0` as
    'the hold time', so it is written `disable`."""
    path = tmp_path / "exabgp.conf"
    path.write_text(render(dataclasses.replace(SPEAKER, graceful_restart=0), [ACTIVE], SOCKET))
    (neighbor,) = exabgp_parse(path).neighbors.values()
    neighbor.infer()
    assert neighbor["capability"]["graceful-restart"] is False


@pytest.mark.parametrize(
    "session",
    [
        Session(IPv4Address("192.168.200.1"), 64512, password='pa"ss'),
        Session(IPv4Address("192.168.200.1"), 64512, description='the "core" router'),
        Session(IPv4Address("192.168.200.1"), 64512, description="bob's router"),
        Session(IPv4Address("192.168.200.1"), 64512, description="back\\slash"),
    ],
    ids=["password_double_quote", "description_double_quote", "description_single_quote", "backslash"],
)
def test_strings_exabgp_cannot_carry_are_refused_not_mangled(tmp_path: Path, session: Session) -> None:
    # ExaBGP unescapes a whole line before tokenizing: no escape survives, so render() refuses
    # (bgpd.config rejects such values first, with file and line).
    with pytest.raises(ValueError, match="cannot quote"):
        render(SPEAKER, [session], SOCKET)


def test_plain_strings_reach_exabgp_unchanged(tmp_path: Path, exabgp_parse: Any) -> None:
    session = Session(IPv4Address("192.168.200.1"), 64512, password="s3cr-et_1", description="rack 3 tor")
    conf = exabgp_parse(_write(tmp_path, [session]))
    [n] = conf.neighbors.values()
    assert n["md5-password"] == "s3cr-et_1"
    assert n["description"] == "rack 3 tor"


# ------------------------------------------------------------------ dual stack (issue 11)

# render(SPEAKER, [ACTIVE, PASSIVE], SOCKET, run="/usr/bin/helper") as bgpd wrote it before dual stack
PRE_DUAL_STACK = """\
# Generated by bgpd; do not edit: bgpd rewrites it at every start and reload.
process bgpd {
    run /usr/bin/helper;
    encoder json;
}

neighbor 192.168.200.1 {
    description "bgpd session 192.168.200.1";
    router-id 192.168.200.2;
    local-address 192.168.200.2;
    local-as 64512;
    peer-as 64512;
    hold-time 90;
    passive false;
    connect 179;
    adj-rib-in false;
    adj-rib-out true;
    manual-eor true;
    group-updates true;
    capability {
        graceful-restart 240;
        route-refresh true;
    }
    family {
        ipv4 unicast;
    }
    api {
        processes [ bgpd ];
        neighbor-changes;
        receive {
            parsed;
            open;
            update;
            notification;
        }
    }
}

neighbor 192.168.200.3 {
    description "rack 3 tor";
    router-id 192.168.200.2;
    local-address 192.168.200.2;
    local-as 64512;
    peer-as 64513;
    hold-time 30;
    passive true;
    connect 1790;
    adj-rib-in false;
    adj-rib-out true;
    manual-eor true;
    group-updates true;
    md5-password "s3cret";
    capability {
        graceful-restart 240;
        route-refresh true;
    }
    family {
        ipv4 unicast;
    }
    api {
        processes [ bgpd ];
        neighbor-changes;
        receive {
            parsed;
            open;
            update;
            notification;
        }
    }
}
"""
PRE_DUAL_STACK_ENVIRONMENT = {
    "exabgp_daemon_daemonize": "false",
    "exabgp_daemon_user": "root",
    "exabgp_daemon_drop": "false",
    "exabgp_api_cli": "false",
    "exabgp_api_ack": "false",
    "exabgp_api_terminate": "true",
    "exabgp_api_respawn": "false",
    "exabgp_log_destination": "stdout",
    "exabgp_log_level": "INFO",
    "exabgp_log_routes": "false",
    "exabgp_log_packets": "false",
    "exabgp_log_rib": "false",
    "exabgp_log_message": "false",
    "exabgp_tcp_bind": "192.168.200.2",
    "exabgp_tcp_port": "1179",
    "exabgp_tcp_attempts": "0",
    "exabgp_reactor_speed": "10.0",
}


def test_default_output_is_byte_identical_to_before_dual_stack() -> None:
    assert render(SPEAKER, [ACTIVE, PASSIVE], SOCKET, run="/usr/bin/helper") == PRE_DUAL_STACK
    assert environment(SPEAKER) == PRE_DUAL_STACK_ENVIRONMENT
    explicit = [replace(ACTIVE, families=(4,)), replace(PASSIVE, families=(4,))]
    assert render(SPEAKER, explicit, SOCKET, run="/usr/bin/helper") == PRE_DUAL_STACK


DUAL = replace(SPEAKER, local_address6=IPv6Address("fd00:200::2"))
V6_BOTH = Session(IPv6Address("fd00:200::1"), 64512, families=(4, 6))
V6_ONLY = Session(IPv6Address("fd00:200::3"), 64513, families=(6,), passive=True)
V4_BOTH = Session(IPv4Address("192.168.200.4"), 64512, families=(6, 4, 6))


def family_entries(body: str) -> list[str]:
    m = re.search(r"^    family \{\n(.*?)^    \}", body, flags=re.S | re.M)
    assert m is not None
    return re.findall(r"^        (.*);$", m.group(1), flags=re.M)


def test_families_per_session() -> None:
    b = blocks(render(DUAL, [ACTIVE, V6_BOTH, V6_ONLY, V4_BOTH], SOCKET))
    assert family_entries(b["192.168.200.1"]) == ["ipv4 unicast"]
    assert family_entries(b["fd00:200::1"]) == ["ipv4 unicast", "ipv6 unicast"]
    assert family_entries(b["fd00:200::3"]) == ["ipv6 unicast"]
    assert family_entries(b["192.168.200.4"]) == ["ipv6 unicast", "ipv4 unicast"]  # in order, once each


def test_ipv6_session_uses_the_ipv6_local_address_and_the_ipv4_router_id() -> None:
    b = blocks(render(DUAL, [ACTIVE, V6_BOTH], SOCKET))
    six, four = settings_of(b["fd00:200::1"]), settings_of(b["192.168.200.1"])
    assert (six["local-address"], six["router-id"]) == ("fd00:200::2", "192.168.200.2")
    assert (four["local-address"], four["router-id"]) == ("192.168.200.2", "192.168.200.2")
    assert six["description"] == '"bgpd session fd00:200::1"'


def test_ipv6_session_without_an_ipv6_local_address_is_refused() -> None:
    with pytest.raises(ValueError, match="local_address6"):
        render(SPEAKER, [V6_BOTH], SOCKET)


@pytest.mark.parametrize("families", [(), (5,), (4, 7)])
def test_unknown_or_no_families_are_refused(families: Any) -> None:
    with pytest.raises(ValueError, match="families"):
        render(SPEAKER, [replace(ACTIVE, families=families)], SOCKET)


def test_exabgp_listens_on_both_addresses() -> None:
    assert environment(DUAL)["exabgp_tcp_bind"] == "192.168.200.2 fd00:200::2"
    assert {k: v for k, v in environment(DUAL).items() if k != "exabgp_tcp_bind"} == {
        k: v for k, v in PRE_DUAL_STACK_ENVIRONMENT.items() if k != "exabgp_tcp_bind"
    }


def test_exabgp_reads_both_listen_addresses() -> None:
    import exabgp  # noqa: F401  # a hard dependency: a failed import fails, never skips
    from exabgp.environment.parsing import ip_list

    assert [str(a) for a in ip_list(environment(DUAL)["exabgp_tcp_bind"])] == ["192.168.200.2", "fd00:200::2"]


def test_exabgp_accepts_dual_stack_config(tmp_path: Path, exabgp_parse: Any) -> None:
    path = tmp_path / "exabgp.conf"
    path.write_text(render(DUAL, [ACTIVE, V6_BOTH, V6_ONLY, V4_BOTH], SOCKET))
    conf = exabgp_parse(path)
    neighbors = {str(n["peer-address"]): n for n in conf.neighbors.values()}
    families = {a: sorted(f"{afi} {safi}" for afi, safi in n.families()) for a, n in neighbors.items()}
    assert families == {
        "192.168.200.1": ["ipv4 unicast"],
        "fd00:200::1": ["ipv4 unicast", "ipv6 unicast"],
        "fd00:200::3": ["ipv6 unicast"],
        "192.168.200.4": ["ipv4 unicast", "ipv6 unicast"],
    }
    for address, n in neighbors.items():
        assert str(n["local-address"]) == ("fd00:200::2" if ":" in address else "192.168.200.2")
        assert str(n["router-id"]) == "192.168.200.2"
        assert n["capability"]["graceful-restart"] == 240
        assert n["adj-rib-out"] is True and n["manual-eor"] is True
        assert n.api["receive-update"] == [PROCESS_NAME]
    assert neighbors["fd00:200::3"]["passive"] is True


def test_exabgp_needs_the_router_id_of_an_ipv6_neighbor(tmp_path: Path, exabgp_parse: Any) -> None:
    # why every block names it: ExaBGP takes an IPv4 local address as router id, but refuses an IPv6 one
    from exabgp.configuration.configuration import Configuration

    text = render(DUAL, [ACTIVE, V6_BOTH], SOCKET).replace("    router-id 192.168.200.2;\n", "")
    path = tmp_path / "exabgp.conf"
    path.write_text(text)
    conf = Configuration([str(path)])
    assert not conf.reload()
    assert "missing router-id" in str(conf.error)
    path.write_text(render(DUAL, [ACTIVE], SOCKET).replace("    router-id 192.168.200.2;\n", ""))
    exabgp_parse(path)  # an IPv4 neighbor alone does without


# ---------------------------------------------------------------- keepalive times (Calico keepaliveTime)


def test_keepalive_times_go_to_their_own_file_not_to_exabgps_config() -> None:
    """ExaBGP's config has no keepalive keyword: its text is the same with and without keepalive times, and
    the keepalive file (read by bgpd.exabgp.launch, change 10) holds them by peer address."""
    import json

    from bgpd.exabgp.confgen import render_keepalives

    timed = [replace(ACTIVE, keepalive_time=1, hold_time=9), replace(PASSIVE, keepalive_time=10), V6_BOTH]
    untimed = [replace(s, keepalive_time=None) for s in timed]
    assert render(DUAL, timed, SOCKET) == render(DUAL, untimed, SOCKET)
    assert json.loads(render_keepalives(timed)) == {"192.168.200.1": 1, "192.168.200.3": 10}
    assert render_keepalives(untimed) == render_keepalives([]) == "{}\n"
    six = replace(V6_BOTH, address=IPv6Address("fd00:200:0::0a"), keepalive_time=29)
    assert render_keepalives([six]) == '{"fd00:200::a": 29}\n'  # as launch normalizes ExaBGP's spelling


@pytest.mark.parametrize(("hold", "keepalive"), [(9, 9), (9, 10), (0, 1), (90, 0)])
def test_keepalive_time_not_below_the_hold_time_is_refused(hold: int, keepalive: int) -> None:
    from bgpd.exabgp.confgen import render_keepalives

    with pytest.raises(ValueError, match="below the hold time"):
        render_keepalives([replace(ACTIVE, hold_time=hold, keepalive_time=keepalive)])


class _Process:
    """What the supervisor needs of ExaBGP's process: the signals it was sent."""

    def __init__(self) -> None:
        self.returncode: int | None = None
        self.pid = 4242
        self.signals: list[int] = []

    def send_signal(self, number: int) -> None:
        self.signals.append(number)


def test_a_reload_rewrites_the_keepalive_file_and_signals_only_what_changed(tmp_path: Path) -> None:
    """The supervisor writes the keepalive file next to exabgp.conf at start and at every reload. A reload
    of a changed neighbor set is ExaBGP's SIGUSR1, as before; a changed keepalive file is KEEPALIVE_SIGNAL
    (ExaBGP reads it again, no session reset); both, when both changed; neither, when nothing did."""
    import json
    import signal

    from bgpd.exabgp.launch import KEEPALIVE_ENV, KEEPALIVE_SIGNAL
    from bgpd.exabgp.supervisor import ExaBGP

    exa = ExaBGP(str(tmp_path), SPEAKER, [ACTIVE, PASSIVE], print, lambda: None, lambda: None)
    assert exa.write_config() is True  # the first write (at start) is a change
    assert json.loads(exa.keepalive_path.read_text()) == {}
    assert exa.keepalive_path == tmp_path / "exabgp.keepalive.json"
    conf = exa.config_path.read_text()
    process = _Process()
    exa._process = process  # type: ignore[assignment]
    timed = [replace(ACTIVE, keepalive_time=1, hold_time=9), PASSIVE]
    exa.reload(timed, reconfigure=False)
    assert process.signals == [KEEPALIVE_SIGNAL]
    assert json.loads(exa.keepalive_path.read_text()) == {"192.168.200.1": 1}
    assert exa.config_path.read_text() == conf.replace("hold-time 90;", "hold-time 9;", 1)
    exa.reload(timed, reconfigure=False)  # the same again: nothing to tell ExaBGP
    assert process.signals == [KEEPALIVE_SIGNAL]
    exa.reload([ACTIVE], reconfigure=True)  # a neighbor gone and the keepalive time with it
    assert process.signals == [KEEPALIVE_SIGNAL, signal.SIGUSR1, KEEPALIVE_SIGNAL]
    exa.reload([ACTIVE, PASSIVE], reconfigure=True)
    assert process.signals[3:] == [signal.SIGUSR1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exabgp.conf", "exabgp.keepalive.json"]
    assert KEEPALIVE_ENV == "BGPD_EXABGP_KEEPALIVE"


# ---------------------------------------------------------------- session security (issue 14)


def test_ttl_security_sends_255_and_accepts_256_minus_the_hops() -> None:
    one, two = (replace(ACTIVE, ttl_security=1), replace(PASSIVE, ttl_security=2))
    b = blocks(render(SPEAKER, [one, two], SOCKET))
    s1, s2 = settings_of(b["192.168.200.1"]), settings_of(b["192.168.200.3"])
    assert (s1["outgoing-ttl"], s1["incoming-ttl"]) == ("255", "255")
    assert (s2["outgoing-ttl"], s2["incoming-ttl"]) == ("255", "254")


def test_without_ttl_security_no_ttl_is_written() -> None:
    text = render(SPEAKER, [ACTIVE, PASSIVE, replace(ACTIVE, address=IPv4Address("192.168.200.9"))], SOCKET)
    assert "ttl" not in text


@pytest.mark.parametrize("hops", [0, 256, -1])
def test_ttl_security_out_of_range_is_refused(hops: int) -> None:
    with pytest.raises(ValueError, match="ttl_security"):
        render(SPEAKER, [replace(ACTIVE, ttl_security=hops)], SOCKET)


def test_exabgp_reads_ttl_security_and_password(tmp_path: Path, exabgp_parse: Any) -> None:
    far = replace(PASSIVE, ttl_security=255)  # the farthest: any TTL from 1 up
    near = replace(ACTIVE, ttl_security=1, password="k")
    conf = exabgp_parse(_write(tmp_path, [near, far, replace(ACTIVE, address=IPv4Address("192.168.200.9"))]))
    neighbors = {str(n["peer-address"]): n for n in conf.neighbors.values()}
    got = {a: (n["outgoing-ttl"], n["incoming-ttl"], n["md5-password"]) for a, n in neighbors.items()}
    assert got == {
        "192.168.200.1": (255, 255, "k"),
        "192.168.200.3": (255, 1, "s3cret"),
        "192.168.200.9": (None, None, None),
    }
