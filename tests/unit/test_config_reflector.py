"""Tests for the route-reflector parts of bgpd.config (``reflector:``, sessions(), kernel.install default) and
the newer keys ``metrics.listen``, ``control.socket``, ``health.startup_window``, ``runtime.log_format``."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from bgpd import config as c
from bgpd.config import ConfigError, PeerConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

A = IPv4Address
A6 = IPv6Address

NODE = """\
node:
  name: rr1
  address: 192.168.100.2
  asn: 64512
"""

REFLECTOR = (
    NODE
    + """\
reflector:
  cluster_id: 1.0.0.1
  clients:
    - 192.168.100.10
    - 192.168.100.11
"""
)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the `occurrence`-th line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not found {occurrence} times"
    return hits[occurrence - 1]


def check_error(text: str, needle: str, keypath: str, message: str = "", occurrence: int = 1) -> ConfigError:
    text = textwrap.dedent(text)
    with pytest.raises(ConfigError) as info:
        c.parse(text, "t.yaml")
    err = info.value
    line = line_of(text, needle, occurrence)
    prefix = f"t.yaml:{line}: {keypath}: " if keypath else f"t.yaml:{line}: "
    assert str(err).startswith(prefix), f"{err} does not start with {prefix!r}"
    assert (err.file, err.line, err.keypath) == ("t.yaml", line, keypath)
    assert message in err.message, err.message
    return err


# ------------------------------------------------------------------------------------ reflector errors


def test_duplicate_client() -> None:
    check_error(
        NODE
        + """\
reflector:
  cluster_id: 1.0.0.1
  clients:
    - 192.168.100.10
    - 192.168.100.11
    - 192.168.100.10
""",
        "- 192.168.100.10",
        "reflector.clients[2]",
        "duplicate client 192.168.100.10",
        occurrence=2,
    )


def test_client_is_own_address() -> None:
    check_error(
        NODE
        + """\
reflector:
  cluster_id: 1.0.0.1
  clients:
    - 192.168.100.10
    - 192.168.100.2
""",
        "- 192.168.100.2",
        "reflector.clients[1]",
        "client 192.168.100.2 is this node's own address",
    )


@pytest.mark.parametrize("bgp_first", [False, True], ids=["reflector-first", "bgp-first"])
def test_client_also_in_bgp_peers(bgp_first: bool) -> None:
    bgp = """\
bgp:
  peers:
    - address: 192.168.100.4
      asn: 64512
    - address: 192.168.100.11
      asn: 64512
"""
    reflector = """\
reflector:
  cluster_id: 1.0.0.1
  clients:
    - 192.168.100.10
    - 192.168.100.11
"""
    text = NODE + (bgp + reflector if bgp_first else reflector + bgp)
    check_error(
        text,
        "- 192.168.100.11",
        "reflector.clients[1]",
        "client 192.168.100.11 is also listed in bgp.peers",
    )


def test_client_also_enabled_mesh_node() -> None:
    check_error(
        NODE
        + """\
bgp:
  mesh:
    enabled: true
    nodes: [192.168.100.2, 192.168.100.3, 192.168.100.11]
reflector:
  cluster_id: 1.0.0.1
  clients:
    - 192.168.100.10
    - 192.168.100.11
""",
        "- 192.168.100.11",
        "reflector.clients[1]",
        "client 192.168.100.11 is also a mesh node (bgp.mesh.nodes)",
    )


def test_client_in_disabled_mesh_is_fine() -> None:
    cfg = c.parse(
        NODE
        + """\
bgp:
  mesh:
    enabled: false
    nodes: [192.168.100.2, 192.168.100.11]
reflector:
  cluster_id: 1.0.0.1
  clients: [192.168.100.11]
"""
    )
    assert cfg.reflector is not None
    assert cfg.reflector.clients == (A("192.168.100.11"),)
    assert [s.address for s in cfg.sessions()] == [A("192.168.100.11")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "cluster id 0 out of range 1..4294967295"),
        ("4294967296", "cluster id 4294967296 out of range"),
        ("-1", "out of range"),
        ("0.0.0.0", "cluster id must not be 0.0.0.0"),
        ('"0.0.0.0"', "cluster id must not be 0.0.0.0"),
        ("1.2.3", "invalid cluster id '1.2.3' (dotted quad or integer)"),
        ("1.2.3.256", "invalid cluster id"),
        ("rr-cluster", "invalid cluster id 'rr-cluster'"),
        ('"16777217"', "invalid cluster id '16777217'"),  # a quoted number is a string, not an integer
        ("true", "expected a string, got boolean"),
        ("1.5", "expected a string, got float"),
        ("[1.0.0.1]", "expected a string, got list"),
        ('""', "cluster id must not be empty"),
    ],
)
def test_bad_cluster_id(value: str, message: str) -> None:
    check_error(
        NODE + f"reflector:\n  cluster_id: {value}\n  clients: [192.168.100.10]\n",
        "cluster_id:",
        "reflector.cluster_id",
        message,
    )


def test_missing_cluster_id() -> None:
    check_error(
        NODE + "reflector:\n  clients: [192.168.100.10]\n",
        "reflector:",
        "reflector.cluster_id",
        "required key missing",
    )


def test_null_reflector_section() -> None:
    check_error(NODE + "reflector:\n", "reflector:", "reflector", "expected a mapping, got null")


def test_unknown_reflector_key() -> None:
    check_error(
        REFLECTOR + "  client: [192.168.100.12]\n",
        "client:",
        "reflector",
        "unknown key 'client' (did you mean 'clients'?)",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("224.0.0.1", "224.0.0.1 is not a unicast address"),
        ("0.0.0.0", "is not a unicast address"),
        ("10.20.30", "invalid IPv4 address '10.20.30'"),
        ("host1", "invalid IPv4 address 'host1'"),
    ],
)
def test_bad_client_address(value: str, message: str) -> None:
    check_error(
        NODE + f"reflector:\n  cluster_id: 1.0.0.1\n  clients:\n    - 192.168.100.10\n    - {value}\n",
        f"- {value}",
        "reflector.clients[1]",
        message,
    )


def test_clients_must_be_a_list() -> None:
    check_error(
        NODE + "reflector:\n  cluster_id: 1.0.0.1\n  clients: 192.168.100.10\n",
        "clients:",
        "reflector.clients",
        "expected a list, got string",
    )


def test_reflector_without_clients() -> None:
    for extra in ("", "  clients:\n", "  clients: []\n"):
        cfg = c.parse(NODE + "reflector:\n  cluster_id: 1.0.0.1\n" + extra)
        assert cfg.reflector == c.ReflectorConfig(cluster_id=A("1.0.0.1"), clients=())
        assert cfg.sessions() == ()


# ------------------------------------------------------------------------------------------ cluster id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.0.0.1", "1.0.0.1"),
        ('"1.0.0.1"', "1.0.0.1"),
        ("16777217", "1.0.0.1"),
        ("0x01000001", "1.0.0.1"),
        ("1", "0.0.0.1"),
        ("4294967295", "255.255.255.255"),
        ("192.168.100.2", "192.168.100.2"),  # equal to the router id: allowed
    ],
)
def test_cluster_id_forms(value: str, expected: str) -> None:
    cfg = c.parse(NODE + f"reflector:\n  cluster_id: {value}\n")
    assert cfg.reflector is not None
    assert cfg.reflector.cluster_id == A(expected)


def test_integer_cluster_id_equals_dotted_quad() -> None:
    as_int = c.parse(NODE + "reflector:\n  cluster_id: 16777217\n  clients: [192.168.100.10]\n")
    as_quad = c.parse(NODE + "reflector:\n  cluster_id: 1.0.0.1\n  clients: [192.168.100.10]\n")
    assert as_int == as_quad
    assert as_int.reflector is not None
    assert as_int.reflector.cluster_id == A("1.0.0.1")


def test_no_reflector_section() -> None:
    assert c.parse(NODE).reflector is None


# ------------------------------------------------------------------------------------ IPv6 clients

NODE6 = NODE + '  address6: "fd00:100::2"\n'


def check_exact(text: str, needle: str, expected: str, occurrence: int = 1) -> None:
    """The error is exactly ``t.yaml:LINE: `` + ``expected``, LINE being that of the needle."""
    with pytest.raises(ConfigError) as info:
        c.parse(text, "t.yaml")
    assert str(info.value) == f"t.yaml:{line_of(text, needle, occurrence)}: {expected}"


def test_ipv6_clients_sessions() -> None:
    cfg = c.parse(
        NODE6
        + """\
bgp:
  peers: [{address: "fd00:100::4", asn: 64512}]
reflector:
  cluster_id: 1.0.0.1
  clients: [192.168.100.10, "fd00:100::10", "FD00:100::11"]
"""
    )
    assert cfg.reflector is not None
    assert cfg.reflector.clients == (A("192.168.100.10"), A6("fd00:100::10"), A6("fd00:100::11"))
    assert cfg.sessions() == (
        PeerConfig(address=A("192.168.100.10"), asn=64512, passive=True, rr_client=True),
        PeerConfig(address=A6("fd00:100::10"), asn=64512, passive=True, rr_client=True),
        PeerConfig(address=A6("fd00:100::11"), asn=64512, passive=True, rr_client=True),
        PeerConfig(address=A6("fd00:100::4"), asn=64512),
    )
    assert [s.family for s in cfg.sessions()] == [4, 6, 6, 6]
    assert cfg.families == (4, 6)
    assert c.parse(c.dump(cfg)) == cfg


def test_ipv6_client_without_address6() -> None:
    text = (
        NODE + "reflector:\n  cluster_id: 1.0.0.1\n  clients:\n    - 192.168.100.10\n    - 'fd00:100::10'\n"
    )
    check_exact(
        text,
        "fd00:100::10",
        "reflector.clients[1]: client fd00:100::10 is an IPv6 address but node.address6 is not set",
    )


def test_ipv6_client_is_own_address6() -> None:
    text = NODE6 + "reflector:\n  cluster_id: 1.0.0.1\n  clients:\n    - 'fd00:100:0::2'\n"
    check_exact(text, "fd00:100:0::2", "reflector.clients[0]: client fd00:100::2 is this node's own address")


def test_duplicate_ipv6_client() -> None:
    text = NODE6 + "reflector:\n  cluster_id: 1.0.0.1\n  clients:\n    - 'fd00::10'\n    - 'FD00::10'\n"
    check_exact(text, "FD00::10", "reflector.clients[1]: duplicate client fd00::10")


def test_ipv6_client_also_in_bgp_peers() -> None:
    text = (
        NODE6
        + "bgp:\n  peers: [{address: 'fd00::11', asn: 64512}]\n"
        + "reflector:\n  cluster_id: 1.0.0.1\n  clients:\n    - 'fd00::11'\n"
    )
    check_exact(text, "- 'fd00::11'", "reflector.clients[0]: client fd00::11 is also listed in bgp.peers")


def test_ipv6_client_also_enabled_mesh_node() -> None:
    text = (
        NODE6
        + "bgp:\n  mesh: {enabled: true, nodes: [192.168.100.2, 'fd00:100::2', 'fd00:100::11']}\n"
        + "reflector:\n  cluster_id: 1.0.0.1\n  clients:\n    - 'fd00:100::11'\n"
    )
    check_exact(
        text,
        "- 'fd00:100::11'",
        "reflector.clients[0]: client fd00:100::11 is also a mesh node (bgp.mesh.nodes)",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'ff02::1'", "ff02::1 is not a unicast address"),
        ("'fe80::10'", "fe80::10 is a link-local address; sessions need a global one"),
        ("'fd00::g'", "invalid IPv6 address 'fd00::g'"),
    ],
)
def test_bad_ipv6_client_address(value: str, message: str) -> None:
    text = NODE6 + f"reflector:\n  cluster_id: 1.0.0.1\n  clients:\n    - {value}\n"
    check_exact(text, f"- {value}", f"reflector.clients[0]: {message}")


def test_cluster_id_stays_ipv4() -> None:
    text = NODE6 + "reflector:\n  cluster_id: 'fd00::1'\n"
    check_exact(
        text, "cluster_id", "reflector.cluster_id: invalid cluster id 'fd00::1' (dotted quad or integer)"
    )


# -------------------------------------------------------------------------------------------- sessions


def test_sessions_order_and_flags() -> None:
    cfg = c.parse(
        """\
node:
  name: rr1
  address: 192.168.100.5
  asn: 64512
bgp:
  port: 1179
  mesh:
    enabled: true
    nodes: [192.168.100.7, 192.168.100.5, 192.168.100.3]
  peers:
    - address: 192.168.100.40
      asn: 64512
      passive: true
    - address: 10.0.0.1
      asn: 65000
      port: 179
reflector:
  cluster_id: 1.0.0.1
  clients:
    - 192.168.100.20
    - 192.168.100.10
"""
    )
    assert cfg.sessions() == (
        # mesh, in list order, own address skipped; the lower address is passive
        PeerConfig(address=A("192.168.100.7"), asn=64512, port=1179, passive=True),
        PeerConfig(address=A("192.168.100.3"), asn=64512, port=1179, passive=False),
        # clients, in list order: iBGP, bgp.port, passive, rr_client
        PeerConfig(address=A("192.168.100.20"), asn=64512, port=1179, passive=True, rr_client=True),
        PeerConfig(address=A("192.168.100.10"), asn=64512, port=1179, passive=True, rr_client=True),
        # bgp.peers as configured, never clients
        PeerConfig(address=A("192.168.100.40"), asn=64512, port=179, passive=True),
        PeerConfig(address=A("10.0.0.1"), asn=65000, port=179, passive=False),
    )
    assert [s.rr_client for s in cfg.sessions()] == [False, False, True, True, False, False]


def test_sessions_client_port_and_asn_follow_node_and_bgp() -> None:
    cfg = c.parse(
        """\
node:
  name: rr
  address: 192.168.100.2
  asn: 4200000000
bgp:
  port: 10179
reflector:
  cluster_id: 7
  clients: [192.168.100.10]
"""
    )
    (client,) = cfg.sessions()
    assert (client.asn, client.port, client.passive, client.rr_client) == (4200000000, 10179, True, True)
    assert client.hold_time is None
    assert client.password is None


def test_rr_client_key_not_accepted_in_bgp_peers() -> None:
    check_error(
        NODE + "bgp:\n  peers:\n    - address: 192.168.100.4\n      asn: 64512\n      rr_client: true\n",
        "rr_client:",
        "bgp.peers[0]",
        "unknown key 'rr_client'",
    )


# ------------------------------------------------------------------------------ kernel.install default


@pytest.mark.parametrize(
    ("text", "install"),
    [
        (NODE, True),
        (NODE + "kernel:\n  protocol: bird\n", True),
        (NODE + "kernel:\n  install: false\n", False),
        (REFLECTOR, False),
        (REFLECTOR + "kernel:\n", False),
        (REFLECTOR + "kernel:\n  protocol: bird\n  table: main\n", False),
        (REFLECTOR + "kernel:\n  install: true\n", True),
        (REFLECTOR + "kernel:\n  install: false\n", False),
        (NODE + "kernel:\n  install: true\n", True),
    ],
    ids=[
        "host",
        "host-kernel-section",
        "host-explicit-false",
        "reflector",
        "reflector-null-kernel",
        "reflector-kernel-section",
        "reflector-explicit-true",
        "reflector-explicit-false",
        "host-explicit-true",
    ],
)
def test_kernel_install_default(text: str, install: bool) -> None:
    assert c.parse(text).kernel.install is install


def test_reflector_kernel_other_defaults_unchanged() -> None:
    cfg = c.parse(REFLECTOR)
    assert cfg.kernel == c.KernelConfig(install=False)


# ------------------------------------------------------------------------------------ metrics.listen


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"127.0.0.1:9179"', ("127.0.0.1", 9179)),
        ("127.0.0.1:9179", ("127.0.0.1", 9179)),
        ('"0.0.0.0:1"', ("0.0.0.0", 1)),
        ('":9179"', ("0.0.0.0", 9179)),  # empty host: all addresses
        ('"192.168.100.2:65535"', ("192.168.100.2", 65535)),
        ('" 127.0.0.1:9179 "', ("127.0.0.1", 9179)),
    ],
)
def test_metrics_listen_ok(value: str, expected: tuple[str, int]) -> None:
    assert c.parse(NODE + f"metrics:\n  listen: {value}\n").metrics.listen == expected


@pytest.mark.parametrize("text", ["", "metrics:\n", "metrics:\n  listen:\n", "metrics:\n  listen: null\n"])
def test_metrics_listen_off(text: str) -> None:
    assert c.parse(NODE + text).metrics.listen is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"9179"', "invalid listen address '9179' (expected ADDR:PORT, e.g. 127.0.0.1:9179)"),
        ("9179", "expected a string, got integer"),
        ('"x:1"', "invalid listen address 'x' (an IPv4 address)"),
        ('"1.2.3.4:0"', "invalid listen address '1.2.3.4:0'"),
        ('"1.2.3.4:70000"', "invalid listen address '1.2.3.4:70000'"),
        ('"1.2.3.4:"', "invalid listen address '1.2.3.4:'"),
        ('"1.2.3.4:http"', "invalid listen address '1.2.3.4:http'"),
        ('"1.2.3.4:-1"', "invalid listen address"),
        ('"[::1]:9179"', "invalid listen address '[::1]'"),
        ('"1.2.3:9179"', "invalid listen address '1.2.3'"),
        ('""', "listen address must not be empty"),
    ],
)
def test_metrics_listen_errors(value: str, message: str) -> None:
    check_error(NODE + f"metrics:\n  listen: {value}\n", "listen:", "metrics.listen", message)


def test_metrics_listen_superscript_port_is_a_config_error() -> None:
    check_error(NODE + 'metrics:\n  listen: "1.2.3.4:9²"\n', "listen:", "metrics.listen", "invalid listen")


def test_metrics_listen_non_ascii_digits_are_a_config_error() -> None:
    check_error(NODE + 'metrics:\n  listen: "1.2.3.4:١٢٣"\n', "listen:", "metrics.listen", "invalid listen")


def test_metrics_unknown_key() -> None:
    check_error(NODE + "metrics:\n  port: 9179\n", "port:", "metrics", "unknown key 'port'")


# ------------------------------------------------------------------------ runtime/control/health keys


@pytest.mark.parametrize(("value", "expected"), [("json", "json"), ("text", "text"), ("JSON", "json")])
def test_log_format_ok(value: str, expected: str) -> None:
    assert c.parse(NODE + f"runtime:\n  log_format: {value}\n").runtime.log_format == expected


def test_log_format_default() -> None:
    assert c.parse(NODE).runtime.log_format == "text"
    assert c.parse(NODE + "runtime:\n  log_level: debug\n").runtime.log_format == "text"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("xml", "bad log format 'xml': one of text, json"),
        ("1", "expected a string, got integer"),
        ('""', "log format must not be empty"),
    ],
)
def test_log_format_errors(value: str, message: str) -> None:
    check_error(
        NODE + f"runtime:\n  dir: /run/bgpd\n  log_format: {value}\n",
        "log_format:",
        "runtime.log_format",
        message,
    )


def test_control_socket() -> None:
    assert c.parse(NODE).control_socket == "/run/bgpd/bgpd.ctl"
    assert c.parse(NODE + "runtime:\n  dir: /run/bgpd/rr1\n").control_socket == "/run/bgpd/rr1/bgpd.ctl"
    cfg = c.parse(NODE + "control:\n  socket: /tmp/x.ctl\n")
    assert cfg.control.socket == "/tmp/x.ctl"
    assert cfg.control_socket == "/tmp/x.ctl"
    assert c.parse(NODE + "control:\n  socket:\n").control.socket is None
    check_error(NODE + "control:\n  socket: 5\n", "socket:", "control.socket", "expected a string")


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("30", 30.0), ("2.5", 2.5), ("3600", 3600.0)])
def test_health_startup_window(value: str, expected: float) -> None:
    got = c.parse(NODE + f"health:\n  startup_window: {value}\n").health.startup_window
    assert got == expected
    assert isinstance(got, float)


def test_health_startup_window_errors() -> None:
    assert c.parse(NODE + "health:\n").health.startup_window == 30.0
    for value in ("-1", "3601", ".nan", ".inf"):
        check_error(
            NODE + f"health:\n  startup_window: {value}\n",
            "startup_window:",
            "health.startup_window",
            "startup window",
        )


# ------------------------------------------------------------------------------------------------ dump


def test_dump_round_trip_with_reflector_and_metrics() -> None:
    cfg = c.parse(
        REFLECTOR
        + """\
bgp:
  port: 1179
  peers:
    - address: 192.168.100.4
      asn: 64512
      description: rr2
pools:
  - cidr: 10.20.0.0/16
metrics:
  listen: "127.0.0.1:9179"
control:
  socket: /run/bgpd/rr1.ctl
health:
  startup_window: 10
runtime:
  dir: /run/bgpd/rr1
  log_format: json
""",
        "rr1.yaml",
    )
    assert cfg.reflector is not None
    assert cfg.metrics.listen == ("127.0.0.1", 9179)
    assert cfg.kernel.install is False
    text = c.dump(cfg)
    again = c.parse(text, "dumped.yaml")
    assert again == cfg
    assert c.dump(again) == text  # normalized output is a fixed point
    assert "reflector:" in text
    assert "cluster_id: 1.0.0.1" in text
    assert "listen: 127.0.0.1:9179" in text


@pytest.mark.parametrize(
    "text",
    [
        REFLECTOR,
        REFLECTOR + "kernel:\n  install: true\n",
        NODE + "reflector:\n  cluster_id: 4294967295\n",
        NODE + "kernel:\n  install: false\n",
        NODE + 'metrics:\n  listen: ":9179"\n',
        NODE,
    ],
)
def test_dump_round_trip_variants(text: str) -> None:
    cfg = c.parse(text)
    assert c.parse(c.dump(cfg)) == cfg


def test_dump_has_no_reflector_section_for_a_host() -> None:
    assert "reflector" not in c.dump(c.parse(NODE))


# -------------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["reflector1.yaml", "reflector2.yaml", "host-rr.yaml"])
def test_example_loads_and_round_trips(name: str) -> None:
    cfg = c.load(CONFIGS / name)
    assert cfg.source == str(CONFIGS / name)
    assert c.parse(c.dump(cfg)) == cfg


def test_reflector_examples_form_a_cluster() -> None:
    rr1 = c.load(CONFIGS / "reflector1.yaml")
    rr2 = c.load(CONFIGS / "reflector2.yaml")
    host = c.load(CONFIGS / "host-rr.yaml")
    assert rr1.reflector is not None
    assert rr2.reflector is not None
    # shared cluster id, and the same clients
    assert rr1.reflector.cluster_id == rr2.reflector.cluster_id == A("1.0.0.1")
    assert rr1.reflector.clients == rr2.reflector.clients
    assert rr1.reflector.clients
    # each lists the other as a (non-client) peer
    assert rr2.node.address in {p.address for p in rr1.bgp.peers}
    assert rr1.node.address in {p.address for p in rr2.bgp.peers}
    for a, b in ((rr1, rr2), (rr2, rr1)):
        (other,) = (s for s in a.sessions() if s.address == b.node.address)
        assert other.rr_client is False
        assert other.asn == a.node.asn == b.node.asn
        assert a.kernel.install is False
        assert [s.address for s in a.sessions() if s.rr_client] == list(a.reflector.clients)  # type: ignore[union-attr]
    assert rr1.node.router_id != rr2.node.router_id
    # the host peers with both reflectors and is a client of both
    assert host.reflector is None
    assert host.kernel.install is True
    assert {p.address for p in host.bgp.peers} == {rr1.node.address, rr2.node.address}
    assert all(p.asn == host.node.asn and not p.passive for p in host.bgp.peers)
    assert host.node.address in rr1.reflector.clients
    assert host.node.address in rr2.reflector.clients
    assert not host.bgp.mesh.enabled
