"""The benchmark harness (bench/): pure parts without root, and a smoke run of `python -m bench` as root."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import agent, birdconf, cli, floor, floorhelper, memtrace, profiling, report, scenarios, topo
from bgpd import config
from bgpd.exabgp import codec
from bgpd.model import Attributes

ROOT = Path(__file__).resolve().parents[2]
BIRD = shutil.which("bird") or "/usr/sbin/bird"


def test_percentile_interpolates() -> None:
    assert scenarios.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert scenarios.percentile([5.0], 90) == 5.0
    assert scenarios.percentile(list(map(float, range(11))), 90) == pytest.approx(9.0)


def test_agent_prefix_keys_round_trip() -> None:
    for prefix in ("10.1.2.3/32", "10.100.0.64/26", "0.0.0.0/0", "fd00:10:0:64::1:86a0/128", "::/0"):
        assert agent.format_key(agent.parse_prefix(prefix)) == prefix
    # an IPv4 and an IPv6 prefix never share a key
    assert agent.parse_prefix("0.0.0.1/32") != agent.parse_prefix("::1/32")


def _route_message(mtype: int, family: int, dst: str, plen: int, proto: int) -> bytes:
    import socket

    body = agent.RTMSG.pack(family, plen, 0, 0, agent.RT_TABLE_MAIN, proto, 0, agent.RTN_UNICAST, 0)
    body += agent.attr(agent.RTA_DST, socket.inet_pton(family, dst))
    body += agent.attr(agent.RTA_TABLE, agent.U32.pack(agent.RT_TABLE_MAIN))
    return agent.NLMSGHDR.pack(16 + len(body), mtype, 0, 0, 0) + body


@pytest.mark.parametrize("pool", [scenarios.V4.pool, scenarios.V6.pool])
def test_agent_counts_the_pools_family_protocol_and_prefixes(pool: str) -> None:
    import socket

    a = agent.Agent(12, pool, "cali0")
    try:
        v6 = ":" in pool
        family = socket.AF_INET6 if v6 else socket.AF_INET
        inside, outside = ("fd00:10:0:64::1", "fd00:99::1") if v6 else ("10.64.0.1", "11.0.0.1")
        other = ("10.64.0.1", socket.AF_INET) if v6 else ("fd00:10:0:64::1", socket.AF_INET6)
        plen = 128 if v6 else 32
        messages = [
            _route_message(agent.RTM_NEWROUTE, family, inside, plen, 12),
            _route_message(agent.RTM_NEWROUTE, family, outside, plen, 12),  # outside the pool
            _route_message(agent.RTM_NEWROUTE, family, inside, plen - 1, 3),  # another protocol
            _route_message(agent.RTM_NEWROUTE, other[1], other[0], 32 if v6 else 128, 12),  # other family
        ]
        a._handle(b"".join(messages))
        assert {agent.format_key(k) for k in a.present} == {f"{inside}/{plen}"}
        a._handle(_route_message(agent.RTM_DELROUTE, family, inside, plen, 12))
        assert a.present == set()
    finally:
        a.events.close()
        a.req.close()


def test_bulk_and_client_prefixes_are_unique_and_in_the_pool() -> None:
    bulk = scenarios.bulk_prefixes(100_000)
    assert len(set(bulk)) == 100_000 and bulk[0] == "10.64.0.0/32"
    routes = [p for i in range(50) for p in scenarios.client_routes(i, 200)]
    assert len(set(routes)) == 10_000
    assert all(p.startswith("10.") for p in routes)


def test_ipv6_prefixes_are_unique_host_routes_in_the_ipv6_pool() -> None:
    v6 = scenarios.V6
    bulk = scenarios.bulk_prefixes(100_000, v6)
    assert len(set(bulk)) == 100_000
    assert bulk[0] == "fd00:10:0:64::1/128" and bulk[-1] == "fd00:10:0:64::1:86a0/128"
    latency = [v6.latency_prefix(i) for i in range(1000)]
    assert len(set(latency)) == 1000 and latency[0] == "fd00:10:0:1::1/128"
    pool = IPv6Network(v6.pool)
    for p in (bulk[0], bulk[-1], latency[0], latency[-1], v6.probe):
        net = IPv6Network(p)
        assert net.prefixlen == 128 and net.subnet_of(pool)
    assert v6.probe not in bulk and v6.probe not in latency and set(bulk).isdisjoint(latency)
    # the IPv4 scenarios' prefixes are what they always were
    assert [scenarios.V4.latency_prefix(i) for i in (0, 199, 200)] == [
        "10.1.0.1/32",
        "10.1.0.200/32",
        "10.1.1.1/32",
    ]
    assert scenarios.V4.probe == scenarios.PROBE == "10.255.0.1/32"


def test_ipv6_batch_files_program_routes_as_felix(tmp_path: Path) -> None:
    settings = scenarios.Settings(workdir=tmp_path)
    add, delete = scenarios.batch_files(settings, 2, scenarios.V6)
    assert add.read_text().splitlines() == [
        "route add fd00:10:0:64::1/128 dev cali0 proto boot",  # IPv6: no scope, as `ip -6 route` of Felix
        "route add fd00:10:0:64::2/128 dev cali0 proto boot",
    ]
    assert delete.read_text().splitlines()[1] == "route del fd00:10:0:64::2/128 dev cali0"
    add4, _ = scenarios.batch_files(settings, 2)
    assert (
        add4 != add
        and add4.read_text().splitlines()[0] == "route add 10.64.0.0/32 dev cali0 proto boot scope link"
    )
    assert add.name.startswith("batch-") and delete.name.startswith("batch-")  # removed after a run


def test_ipv6_bgpd_config_peers_over_ipv6_only(tmp_path: Path) -> None:
    """The IPv6 scenarios' bgpd: one mesh session, between the IPv6 addresses, and the IPv6 pool."""
    a = topo.Host("hA", "ns-a", "192.168.100.10", tmp_path, address6="fd00:100::10")
    b = topo.Host("hB", "ns-b", "192.168.100.11", tmp_path, address6="fd00:100::11")
    for host in (a, b):
        raw = scenarios.bgpd_config(host, [a.address6, b.address6], scenarios.V6)
        raw["runtime"] = {"dir": str(tmp_path / "run")}
        cfg = config.parse(yaml.safe_dump(raw))
        (session,) = cfg.sessions()
        other = b if host is a else a
        assert session.address == ip_address(other.address6)
        assert session.passive == (host is a)  # the lower address waits, as in the IPv4 mesh
        assert [str(p.cidr) for p in cfg.pools] == [scenarios.V6.pool]
    raw4 = scenarios.bgpd_config(a, [a.address, b.address])
    assert raw4["bgp"]["mesh"]["nodes"] == [a.address, b.address] and "address6" not in raw4["node"]


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
        birdconf.host("fd00:100::11", ["fd00:100::10"], "fd00:10::/48", 64512, router_id="192.168.100.11"),
        birdconf.host("fd00:100::10", ["fd00:100::11"], "fd00:10::/48", 64512, router_id="192.168.100.10"),
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
    low6 = birdconf.host("fd00:100::10", ["fd00:100::11"], "fd00:10::/48", 64512, router_id="192.168.100.10")
    high6 = birdconf.host("fd00:100::11", ["fd00:100::10"], "fd00:10::/48", 64512, router_id="192.168.100.11")
    assert "passive on" in low6 and "passive on" not in high6


def test_bird_ipv6_host_is_calicos_bird6_in_bird2_syntax() -> None:
    text = birdconf.host("fd00:100::11", ["fd00:100::10"], "fd00:10::/48", 64512, router_id="192.168.100.11")
    assert "router id 192.168.100.11;" in text and "ipv4" not in text
    assert text.count("  ipv6 {") == 2 and "  ipv6;" in text  # kernel and BGP channels, direct protocol
    assert "neighbor fd00:100::10 as 64512;" in text and "source address fd00:100::11;" in text
    assert "if ( net ~ fd00:10::/48 ) then" in text and "krt_source = 3 || krt_source = 80" in text
    with pytest.raises(ValueError):
        birdconf.host("fd00:100::11", ["fd00:100::10"], "fd00:10::/48", 64512)  # no IPv4 router id


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
    top = s["self"]
    assert isinstance(top, list) and top[0] == {"function": "hot (bgpd/y.py)", "samples": 30, "share": 0.75}


# --------------------------------------------------------------------------------------------- floor
# ExaBGP 5.0.15 API lines (encoder json), as in tests/unit/test_codec.py
HEAD = '{ "exabgp": "5.0.0", "time": 1795638558.5, "host" : "vm", "pid" : 2966, "ppid" : 1, "counter": 1, '
NEIGHBOR = (
    '"neighbor": { "address": { "local": "192.168.100.11", "peer": "192.168.100.10" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.11" , '
)
STATE_UP = HEAD + '"type": "state", ' + NEIGHBOR + '"state": "up" } }'
ANNOUNCE = (
    HEAD + '"type": "update", ' + NEIGHBOR + '"direction": "receive", "message": { "update": { "attribute": '
    '{ "origin": "igp", "local-preference": 100 }, "announce": { "ipv4 unicast": { "192.168.100.10": '
    '[ { "nlri": "10.1.0.1/32" }, { "nlri": "10.1.0.2/32" } ] } } } } } }'
)
WITHDRAW = (
    HEAD + '"type": "update", ' + NEIGHBOR + '"direction": "receive", "message": { "update": { "withdraw": '
    '{ "ipv4 unicast": [ { "nlri": "10.1.0.1/32" } ] } } } } }'
)
EOR = (
    HEAD + '"type": "update", ' + NEIGHBOR + '"direction": "receive", '
    '"message": { "eor": { "afi" : "ipv4", "safi" : "unicast" } } } }'
)


def test_floor_helper_reports_exabgp_events() -> None:
    assert floorhelper.event_report(STATE_UP, 1.5) == {
        "ev": "state",
        "t": 1.5,
        "peer": "192.168.100.10",
        "state": "up",
    }
    assert floorhelper.event_report(ANNOUNCE, 2.0) == {
        "ev": "update",
        "t": 2.0,
        "peer": "192.168.100.10",
        "add": ["10.1.0.1/32", "10.1.0.2/32"],
        "del": [],
    }
    withdrawn = floorhelper.event_report(WITHDRAW, 3.0)
    assert withdrawn is not None and withdrawn["add"] == [] and withdrawn["del"] == ["10.1.0.1/32"]
    assert floorhelper.event_report(EOR, 4.0) == {"ev": "eor", "t": 4.0, "peer": "192.168.100.10"}
    for line in ("done", "", "{not json", "[1, 2]", '{"type": "update"}', HEAD + '"type": "open" }'):
        assert floorhelper.event_report(line, 0.0) is None


def test_floor_parse_report_and_matching() -> None:
    update = floor.parse_report(json.dumps(floorhelper.event_report(ANNOUNCE, 7)))
    assert update is not None and update["t"] == 7.0 and isinstance(update["t"], float)
    assert floor.has("add", "10.1.0.2/32")(update) and not floor.has("del", "10.1.0.2/32")(update)
    assert not floor.has("add", "10.1.0.3/32")(update)
    sent = floor.parse_report('{"ev": "sent", "t": 1.25, "cmd": "announce eor"}')
    assert sent == {"ev": "sent", "t": 1.25, "cmd": "announce eor"}
    assert floor.parse_report('{"ev": "hello", "role": "sender"}') == {"ev": "hello", "role": "sender"}
    for bad in ("", "garbage", "[]", '{"t": 1.0}', '{"ev": "sent"}', '{"ev": "sent", "t": "1"}'):
        assert floor.parse_report(bad) is None
    assert floor.parse_report('{"ev": "sent", "t": true}') is None


def test_floor_commands_are_bgpds() -> None:
    nh, prefix = "192.168.100.10", "10.1.0.1/32"
    args = ([IPv4Network(prefix)], IPv4Address(nh))
    assert [floor.announce(nh, prefix)] == codec.announce_lines(*args, Attributes())
    assert [floor.withdraw(nh, prefix)] == codec.withdraw_lines(*args)


def test_floor_exabgp_config_and_environment(tmp_path: Path) -> None:
    sender = floor.exabgp_config("192.168.100.10", "192.168.100.11", "sender", "/tmp/f.sock")
    receiver = floor.exabgp_config("192.168.100.11", "192.168.100.10", "receiver", "/tmp/f.sock")
    for text in (sender, receiver):
        for line in ("adj-rib-out true;", "adj-rib-in false;", "manual-eor true;", "ipv4 unicast;"):
            assert line in text
        assert "processes [ bgpd ];" in text and "encoder json;" in text and "receive {" in text
        assert f"run {sys.executable} {floor.HELPER} " in text and "bgpd.exabgp.bridge" not in text
    assert "passive true;" in sender and "passive false;" in receiver  # the lower address waits
    # ExaBGP itself accepts both (`validate` parses the configuration; nothing is started)
    for name, text in (("sender", sender), ("receiver", receiver)):
        conf = tmp_path / f"{name}.conf"
        conf.write_text(text)
        proc = subprocess.run(
            [sys.executable, "-m", "bgpd.exabgp.launch", "validate", str(conf)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    env = floor.exabgp_env("192.168.100.10", patched=True)
    assert env["exabgp_tcp_bind"] == "192.168.100.10" and env["exabgp_tcp_port"] == "179"
    assert env["exabgp_log_level"] == "WARNING" and env["exabgp_reactor_speed"] == "10.0"
    assert env["exabgp_api_ack"] == "false" and env["exabgp_daemon_user"] == "root"
    assert env["BGPD_EXABGP_UNPATCHED"] == "0"
    assert floor.exabgp_env("192.168.100.10", patched=False)["BGPD_EXABGP_UNPATCHED"] == "1"


def _helper(role: str, path: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, floor.HELPER, role, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


def _accept_one(listener: socket.socket) -> floor.Link:
    conn, _ = listener.accept()
    link = floor.Link(conn, "test")
    link.expect(lambda r: r["ev"] == "hello", 10.0, "hello")
    return link


def test_floor_helpers_relay_commands_and_events(tmp_path: Path) -> None:
    """Both helpers with pipes in ExaBGP's place and a unix socket in the harness's (no network)."""
    path = str(tmp_path / "f.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(2)
    listener.settimeout(10.0)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(_helper("sender", path))
        send = _accept_one(listener)
        command = floor.announce("192.168.100.10", "10.1.0.1/32")
        t = send.command(command)
        out = procs[0].stdout
        assert out is not None
        assert select.select([out], [], [], 10.0)[0]
        assert out.readline() == command.encode() + b"\n"  # what ExaBGP reads: the command, one line
        procs.append(_helper("receiver", path))
        recv = _accept_one(listener)
        stdin = procs[1].stdin
        assert stdin is not None
        stdin.write(f"{STATE_UP}\n{ANNOUNCE}\n".encode())
        stdin.flush()
        up = recv.expect(lambda r: r["ev"] == "state", 10.0, "state")
        assert up["state"] == "up" and up["t"] >= t
        seen = recv.expect(floor.has("add", "10.1.0.2/32"), 10.0, "update")
        assert seen["t"] == up["t"]  # one read, one timestamp
        send.close()
        recv.close()
        stdin.close()  # ExaBGP gone: the receiver exits
        assert procs[0].wait(10.0) == 0 and procs[1].wait(10.0) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        listener.close()


def _results(runs: dict[str, Any], errors: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"runs": runs, "errors": errors or {}}


def test_report_floor_rows_fill_the_bgpd_column_only() -> None:
    results = _results(
        {
            "floor": {
                "exabgp": [{"add_p50_ms": 1.0, "del_p50_ms": 2.0}, {"add_p50_ms": 3.0, "del_p50_ms": 2.0}],
                "exabgp-unpatched": [{"add_p50_ms": 5.0}],
            },
        },
        {"floor": {"exabgp-unpatched": "failed: x"}},
    )
    rows = {r["label"]: r for r in report.summarize(results)}
    add = rows[f"{report.FLOOR}, add p50"]
    assert add["bgpd"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 2}
    assert add["bird"] is None and add["ratio"] is None and add["met"] is None and add["goal"] == ""
    assert add["bgpd_source"] == "exabgp" and add["bird_source"] is None
    assert rows[f"{report.FLOOR}, add p90"]["bgpd"] is None  # no such metric in these runs
    unpatched = rows[f"{report.FLOOR}, unpatched ExaBGP, add p50"]
    assert unpatched["bgpd"]["median"] == 5.0 and unpatched["bgpd_error"] == "failed: x"
    assert "bird_error" not in unpatched
    line = next(r for r in report.table(list(rows.values())) if r[0] == add["label"])
    assert line == [add["label"], "ms", "2.00 (1.00–3.00)", "—", "—", "", ""]
    # nothing of the floor leaks into the other scenarios' rows
    assert {r["scenario"] for r in rows.values()} == {"floor"}


def test_report_reflector_exabgp_cpu_from_the_split() -> None:
    results = _results(
        {
            "reflector": {
                "bgpd": [
                    {"converge_s": 3.0, "cpu_by_process_s": {"bgpd": 1.0, "exabgp": 2.5, "bridge": 0.0}},
                    {"converge_s": 3.0, "cpu_by_process_s": {"bgpd": 1.0, "exabgp": 1.5}},
                    {"converge_s": 3.0},  # a run from before the split was recorded
                ],
                "bird": [{"converge_s": 1.0, "cpu_by_process_s": {"bird": 0.5}}],
            }
        },
        {"reflector": {"bird": "failed: y"}},
    )
    row = next(r for r in report.summarize(results) if r["metric"] == "cpu_by_process_s.exabgp")
    assert row["label"] == "reflector: ExaBGP's own CPU until converged"
    assert row["bgpd"] == {"median": 2.0, "min": 1.5, "max": 2.5, "n": 2}
    assert row["bird"] is None and row["ratio"] is None and "bird_error" not in row
    assert report.metric_of({"a": {"b": 1}}, "a.b") == 1
    assert report.metric_of({"a": 1}, "a.b") is None and report.metric_of({}, "a") is None


def test_floor_and_blocks_run_only_when_asked() -> None:
    for quick in (False, True):
        for scenario in ("floor", "blocks"):
            assert scenario not in cli.default_scenarios(quick)
    ipv4 = ["latency", "latency-active", "bulk10k", "bulk100k", "reflector", "reflector200", "memory"]
    assert cli.default_scenarios(False) == [*ipv4, "latency6", "bulk10k6", "bulk100k6"]
    assert cli.default_scenarios(True) == [
        "latency",
        "latency-active",
        "bulk10k",
        "reflector",
        "memory",
        "latency6",
        "bulk10k6",
    ]
    args = cli.parser().parse_args(["--scenarios", "floor", "--daemons", "bgpd"])
    assert args.scenarios == ["floor"]
    assert cli.parser().parse_args([]).scenarios is None
    args = cli.parser().parse_args(["--scenarios", "blocks"])
    assert args.scenarios == ["blocks"] and args.blocks_sizes == [30_000, 100_000]
    assert cli.parser().parse_args(["--blocks-sizes", "300,1000"]).blocks_sizes == [300, 1000]
    for bad in ("1000,300", "300", "a,b", "0,10", "1,2,3"):
        with pytest.raises(SystemExit):
            cli.parser().parse_args(["--blocks-sizes", bad])


def test_ipv6_scenarios_are_the_ipv4_ones_in_the_other_family() -> None:
    assert cli.family_of("latency6") == ("latency", scenarios.V6)
    assert cli.family_of("bulk100k6") == ("bulk100k", scenarios.V6)
    assert cli.family_of("bulk10k") == ("bulk10k", scenarios.V4)
    assert cli.family_of("reflector") == ("reflector", scenarios.V4)
    args = cli.parser().parse_args(["--scenarios", "latency6,bulk10k6,bulk100k6"])
    bench = cli.Bench(args)
    assert bench.repeat["latency6"] == 5 and bench.repeat["bulk10k6"] == 5 and bench.repeat["bulk100k6"] == 3


def test_ipv6_bulk_runs_keep_their_own_memory_figures(tmp_path: Path) -> None:
    """An IPv6 bulk 100k run is stored under bulk100k6 only, not in the (IPv4) memory or idle rows."""
    args = cli.parser().parse_args(["--scenarios", "bulk100k,memory,bulk100k6", "--workdir", str(tmp_path)])
    bench = cli.Bench(args)
    run4 = {"n": 100_000, "family": 4, "bytes_per_route": 400.0}
    run6 = {"n": 100_000, "family": 6, "bytes_per_route": 900.0}
    bench._record("bulk100k", "bgpd", run4)
    bench._record("bulk100k6", "bgpd", run6)
    runs = bench.results["runs"]
    assert runs["bulk100k6"]["bgpd"] == [run6] and runs["memory"]["bgpd"] == [run4]
    rows = {r["label"]: r for r in report.summarize({"runs": runs, "errors": {}})}
    six = rows["IPv6 bulk 100k: receiver RSS per route beyond idle"]
    assert six["bgpd"]["median"] == 900.0 and six["goal"] == "≤ 500 B" and six["met"] is False
    assert rows["receiver RSS per route beyond idle"]["bgpd"]["median"] == 400.0


def test_memtrace_puts_bytes_per_route_on_source_lines(tmp_path: Path) -> None:
    import tracemalloc

    tracemalloc.start(4)
    try:
        tracemalloc.take_snapshot().dump(str(tmp_path / "idle"))
        held = [bytearray(1000) for _ in range(100)]  # 100 "routes" of ~1 kB each
        tracemalloc.take_snapshot().dump(str(tmp_path / "full"))
    finally:
        tracemalloc.stop()
    lines, traced = memtrace.analyse(tmp_path / "idle", tmp_path / "full", 100, 5, 3)
    assert len(held) == 100 and traced >= 1000
    top = lines[4]  # the first table row: the bytearray line of this test
    assert "tests/bench/test_bench.py:" in top and "bytearray(1000)" in top, lines


def test_report_ipv6_rows_mirror_the_ipv4_ones() -> None:
    four = [r for r in report.ROWS if r.scenario in ("latency", "bulk10k", "bulk100k", "memory")]
    six = [r for r in report.ROWS if r.scenario in ("latency6", "bulk10k6", "bulk100k6")]
    assert len(four) == len(six) == 15
    for r4, r6 in zip(four, six, strict=True):
        assert r6.label.startswith("IPv6 ") and (r4.metric, r4.unit, r4.goal) == (r6.metric, r6.unit, r6.goal)


def test_block_prefixes_and_batch_files(tmp_path: Path) -> None:
    blocks = scenarios.block_prefixes(100_000)
    assert len(set(blocks)) == 100_000 and blocks[0] == "10.80.0.0/32" and blocks[-1] == "10.81.134.159/32"
    pool = IPv4Network(scenarios.V4.pool)  # the pool of both daemons' configs must hold every block
    assert all(IPv4Network(p).subnet_of(pool) for p in (blocks[0], blocks[-1]))
    bulk = set(scenarios.bulk_prefixes(100_000))
    assert bulk.isdisjoint(blocks) and scenarios.PROBE not in blocks
    add, delete = scenarios.block_files(scenarios.Settings(workdir=tmp_path), 3)
    assert add.read_text().splitlines() == [
        "route add blackhole 10.80.0.0/32 proto 80",
        "route add blackhole 10.80.0.1/32 proto 80",
        "route add blackhole 10.80.0.2/32 proto 80",
    ]
    assert delete.read_text().splitlines()[2] == "route del blackhole 10.80.0.2/32 proto 80"
    assert add.name.startswith("batch-") and delete.name.startswith("batch-")  # removed after a run


def test_bird_host_config_exports_felix_blocks() -> None:
    """As Calico's: the kernel protocol learns protocol 80 (Felix's blackhole blocks) and the BGP export
    filter passes what is inside the pool."""
    text = birdconf.host("192.168.100.10", ["192.168.100.11"], scenarios.V4.pool, 64512)
    assert "learn;" in text and "krt_source = 80" in text
    assert f"if ( net ~ {scenarios.V4.pool} ) then" in text


def test_blocks_growth_pairs_repetitions() -> None:
    small = [
        {"rep": 0, "n": 300, "add_us_per_route": 10.0, "del_us_per_route": 5.0},
        {"rep": 1, "n": 300, "add_us_per_route": 20.0, "del_us_per_route": 5.0},
    ]
    large = [
        {"rep": 1, "n": 1000, "add_us_per_route": 30.0, "del_us_per_route": 10.0},
        {"rep": 2, "n": 1000, "add_us_per_route": 1.0},  # its small run failed: not paired
        {"rep": 0, "n": 1000, "add_us_per_route": 10.0},  # no delete figure
    ]
    growth = scenarios.blocks_growth(small, large)
    assert growth == [
        {"rep": 1, "sizes": [300, 1000], "growth_add": 1.5, "growth_del": 2.0},
        {"rep": 0, "sizes": [300, 1000], "growth_add": 1.0},
    ]


def test_report_blocks_rows_name_the_sizes() -> None:
    results = _results(
        {
            "blocks_small": {"bgpd": [{"add_s": 0.3, "add_us_per_route": 10.0}], "bird": []},
            "blocks_large": {
                "bgpd": [{"add_s": 1.0, "add_us_per_route": 10.0, "ctl_add_sender_failures": 0}],
                "bird": [{"add_s": 2.0, "add_us_per_route": 20.0, "ctl_add_sender_failures": 0}],
            },
            "blocks": {"bgpd": [{"growth_add": 1.0}, {"growth_add": 1.2}], "bird": [{"growth_add": 1.5}]},
        },
        {"blocks_small": {"bird": "failed: z"}},
    )
    results["settings"] = {"blocks_sizes": [300, 1000]}
    rows = {r["label"]: r for r in report.summarize(results)}
    assert rows["blocks 300: time per block added"]["bird_error"] == "failed: z"
    large = rows["blocks 1k: /32 blocks added → all installed"]
    assert large["bgpd"]["median"] == 1.0 and large["ratio"] == 0.5
    growth = rows["blocks: time per block added, 1k ÷ 300 (1 = linear)"]
    assert growth["bgpd"]["median"] == 1.1 and growth["met"] is True
    unanswered = rows["blocks 1k: sender's status requests unanswered during the add"]
    assert unanswered["met"] is True
    del results["settings"]  # results of a run without the setting: the default sizes
    labels = {r["label"] for r in report.summarize(results)}
    assert "blocks: time per block added, 100k ÷ 30k (1 = linear)" in labels
    assert report.size_text(30_000) == "30k" and report.size_text(1_500) == "1,500"


def _two_hosts(tmp_path: Path) -> tuple[topo.Host, topo.Host]:
    return (
        topo.Host("hA", "ns-a", "192.168.100.10", tmp_path, address6="fd00:100::10"),
        topo.Host("hB", "ns-b", "192.168.100.11", tmp_path, address6="fd00:100::11"),
    )


@pytest.mark.parametrize("family", [scenarios.V4, scenarios.V6])
def test_latency_active_bgpd_config_has_two_active_peers(tmp_path: Path, family: scenarios.Family) -> None:
    """latency-active: no mesh; each host lists the other in bgp.peers, not passive, so both connect."""
    a, b = _two_hosts(tmp_path)
    v6 = family.version == 6
    mesh = [a.address6, b.address6] if v6 else [a.address, b.address]
    for host, other in ((a, b), (b, a)):
        raw = scenarios.bgpd_config(host, mesh, family, scenarios.ACTIVE)
        assert "mesh" not in raw["bgp"]
        raw["runtime"] = {"dir": str(tmp_path / "run")}
        cfg = config.parse(yaml.safe_dump(raw))
        (session,) = cfg.sessions()
        assert session.address == ip_address(other.address6 if v6 else other.address)
        assert session.passive is False and session.asn == topo.ASN
        # the mesh variant of the same host: one side passive
        mesh_cfg = scenarios.bgpd_config(host, mesh, family)
        mesh_cfg["runtime"] = raw["runtime"]
        (mesh_session,) = config.parse(yaml.safe_dump(mesh_cfg)).sessions()
        assert mesh_session.passive == (host is a)
    with pytest.raises(ValueError, match="unknown peering"):
        scenarios.bgpd_config(a, mesh, family, "both")


def test_latency_active_bird_hosts_are_both_active() -> None:
    low = birdconf.host("192.168.100.10", ["192.168.100.11"], "10.0.0.0/8", 64512, both_active=True)
    high = birdconf.host("192.168.100.11", ["192.168.100.10"], "10.0.0.0/8", 64512, both_active=True)
    assert "passive" not in low and "passive" not in high
    assert "neighbor 192.168.100.11 as 64512;" in low
    # the rest of the file is the mesh host's, line for line
    mesh = birdconf.host("192.168.100.10", ["192.168.100.11"], "10.0.0.0/8", 64512)
    assert [line for line in mesh.splitlines() if "passive" not in line] == low.splitlines()


@pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 not installed")
def test_latency_active_bird_config_parses(tmp_path: Path) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(
        birdconf.host("192.168.100.10", ["192.168.100.11"], "10.0.0.0/8", 64512, both_active=True)
    )
    proc = subprocess.run([BIRD, "-p", "-c", str(conf)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_session_opener_reads_which_side_connected() -> None:
    hosts = {"192.168.100.10": "hA", "192.168.100.11": "hB", "fd00:100::11": "hB", "fd00:100::10": "hA"}
    incoming = "0      0      192.168.100.10:179   192.168.100.11:41234\n"
    outgoing = "0      0      192.168.100.10:52110   192.168.100.11:179\n"
    assert scenarios.session_opener(incoming, hosts) == "hB"
    assert scenarios.session_opener(outgoing, hosts) == "hA"
    assert scenarios.session_opener(incoming + outgoing, hosts) == "hA,hB"
    assert scenarios.session_opener("", hosts) == ""
    six = "0 0 [fd00:100::10]:179 [fd00:100::11]:40000\n"
    assert scenarios.session_opener(six, hosts) == "hB"


def test_latency_active_scenario_runs_latency_with_active_peers(tmp_path: Path) -> None:
    args = cli.parser().parse_args(["--scenarios", "latency-active", "--workdir", str(tmp_path)])
    bench = cli.Bench(args)
    assert bench.repeat["latency-active"] == 5
    run = {"add_p50_ms": 250.0, "del_p50_ms": 240.0, "peering": "active"}
    bench._record("latency-active", "bgpd", run)
    bench._record("latency-active", "bird", {"add_p50_ms": 0.5, "del_p50_ms": 0.4})
    rows = {r["label"]: r for r in report.summarize(bench.results)}
    add = rows["latency, both hosts active add → installed, p50"]
    assert add["bgpd"]["median"] == 250.0 and add["ratio"] == 500.0 and add["met"] is False
    assert {r["scenario"] for r in rows.values()} == {"latency-active"}


def test_reflector200_is_the_large_reflector(tmp_path: Path) -> None:
    args = cli.parser().parse_args(["--scenarios", "reflector,reflector200", "--workdir", str(tmp_path)])
    bench = cli.Bench(args)
    assert bench.repeat["reflector200"] == 1 and bench.repeat["reflector"] == 3
    st = bench.settings
    assert (st.reflector_clients, st.reflector_routes) == (50, 200)
    assert (st.reflector_large_clients, st.reflector_large_routes) == (200, 200)
    assert bench.results["settings"]["reflector200_clients"] == 200
    args = cli.parser().parse_args(["--large-clients", "30", "--large-routes-per-client", "5"])
    assert (args.large_clients, args.large_routes_per_client) == (30, 5)
    for option, bad in (("--large-clients", "241"), ("--large-clients", "1"), ("--clients", "x")):
        with pytest.raises(SystemExit):
            cli.parser().parse_args([option, bad])
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--large-routes-per-client", "0"])
    # the clients' prefixes stay unique and inside the pool at 200 x 200
    routes = [p for i in range(200) for p in scenarios.client_routes(i, 200)]
    assert len(set(routes)) == 40_000
    pool = IPv4Network(topo.POOL)
    assert IPv4Network(routes[-1]).subnet_of(pool) and IPv4Network(routes[0]).subnet_of(pool)


def test_reflector_clients_are_polled_for_their_channel_counter() -> None:
    """The clients' progress comes from BIRD's channel counter (constant time), not a table walk."""
    assert scenarios.IMPORTED_COMMAND == "show protocols all reflector"
    reply = [
        "2002-Name       Proto      Table      State  Since         Info",
        "1002-reflector  BGP        ---        up     15:34:24.710  Established   ",
        "1006-  Description:    Connection to BGP peer",
        "  Channel ipv4",
        "    Routes:         33200 imported, 200 exported, 33200 preferred",
        "    Route change stats:     received   rejected   filtered    ignored   accepted",
        "0000 ",
    ]
    assert scenarios.imported_count(reply) == 33200
    assert scenarios.imported_count(["1006-    Routes:         9800 imported, 0 exported", "0000 "]) == 9800
    assert scenarios.imported_count(["0013 Daemon is up and running"]) == -1


def _rr_run(clients: int, converge: float, cpu: float) -> dict[str, Any]:
    return {
        "clients": clients,
        "routes_per_client": 200,
        "converge_s": converge,
        "reflector_cpu_s": cpu,
        "reflector_rss_bytes": 100 << 20,
        "cpu_by_process_s": {"bgpd": cpu / 2, "exabgp": cpu / 2},
    }


def test_reflector_growth_is_the_ratio_of_medians() -> None:
    small = [_rr_run(50, 4.0, 4.0), _rr_run(50, 3.0, 5.0), _rr_run(50, 5.0, 3.0)]
    large = [_rr_run(200, 81.0, 80.0)]
    (growth,) = scenarios.reflector_growth(small, large)
    work = 200 * 199 / (50 * 49)
    assert growth["sizes"] == [[50, 200], [200, 200]]
    assert growth["work_ratio"] == pytest.approx(work)
    assert growth["converge_ratio"] == pytest.approx(81.0 / 4.0)
    assert growth["cpu_ratio"] == pytest.approx(20.0)
    assert growth["per_route_ratio"] == pytest.approx(81.0 / 4.0 / work)
    assert scenarios.reflector_growth([], large) == [] and scenarios.reflector_growth(small, []) == []


def test_report_reflector200_and_growth_rows(tmp_path: Path) -> None:
    args = cli.parser().parse_args(["--scenarios", "reflector,reflector200", "--workdir", str(tmp_path)])
    bench = cli.Bench(args)
    for daemon, small, large in (("bgpd", 4.0, 80.0), ("bird", 0.5, 5.0)):
        bench._record("reflector", daemon, _rr_run(50, small, small))
        bench._record("reflector200", daemon, _rr_run(200, large, large))
    bench._reflector_growth()
    rows = {r["label"]: r for r in report.summarize(bench.results)}
    conv = rows["reflector (200 clients): every client has all others' routes"]
    assert conv["bgpd"]["median"] == 80.0 and conv["ratio"] == 16.0 and conv["goal"] == ""
    assert rows["reflector (200 clients): ExaBGP's own CPU until converged"]["bird"] is None
    assert rows["reflector (200 clients) RSS converged"]["bgpd"]["median"] == 100.0
    growth = rows["reflector: convergence, 200 ÷ 50 clients (routes delivered: 16.2×)"]
    assert growth["bgpd"]["median"] == 20.0 and growth["bird"]["median"] == 10.0
    per_route = rows["reflector: time per route delivered, 200 ÷ 50 clients (1 = linear)"]
    assert per_route["bgpd"]["median"] == pytest.approx(20.0 / (200 * 199 / (50 * 49)))
    assert rows["reflector: CPU until converged, 200 ÷ 50 clients"]["bird"]["median"] == 10.0
    # the 50-client rows keep their labels (the README quotes them)
    assert rows["reflector: every client has all others' routes"]["goal"] == "≤ 1.0× BIRD"
    # reflector200 alone: no growth rows
    alone = cli.Bench(cli.parser().parse_args(["--scenarios", "reflector200", "--workdir", str(tmp_path)]))
    alone._record("reflector200", "bgpd", _rr_run(200, 80.0, 80.0))
    assert "reflector_growth" not in alone.results["runs"]
    assert {r["scenario"] for r in report.summarize(alone.results)} == {"reflector200"}


def _run_bench(tmp_path: Path, args: list[str], timeout: float) -> dict[str, Any]:
    """`python -m bench ARGS`, results and work files under tmp_path; its latest.json (exit 0 asserted)."""
    out = ["--results", str(tmp_path / "results"), "--workdir", str(tmp_path / "work")]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args, *out],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data: dict[str, Any] = json.loads((tmp_path / "results" / "latest.json").read_text())
    return data


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0 or not Path(BIRD).exists(), reason="needs root and BIRD 2")
def test_bench_blocks_smoke(tmp_path: Path) -> None:
    data = _run_bench(tmp_path, ["--scenarios", "blocks", "--repeat", "1", "--blocks-sizes", "300,1000"], 300)
    assert data["errors"] == {}, data["errors"]
    for daemon in ("bgpd", "bird"):
        for key, n in (("blocks_small", 300), ("blocks_large", 1000)):
            (run,) = data["runs"][key][daemon]
            assert run["n"] == n and run["add_s"] > 0 and run["del_s"] > 0
            assert run["add_us_per_route"] == pytest.approx(run["add_s"] * 1e6 / n)
            for phase in ("add", "del"):
                for side in ("sender", "receiver"):
                    assert run[f"ctl_{phase}_{side}_answers"] >= 1
                    assert run[f"ctl_{phase}_{side}_failures"] == 0
        (growth,) = data["runs"]["blocks"][daemon]
        assert growth["sizes"] == [300, 1000] and growth["growth_add"] > 0
    assert not list((tmp_path / "work").glob("batch-*.txt"))
    assert "blocks 1k: /32 blocks added → all installed" in (tmp_path / "results" / "latest.md").read_text()


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0 or not Path(BIRD).exists(), reason="needs root and BIRD 2")
def test_bench_latency_smoke(tmp_path: Path) -> None:
    data = _run_bench(tmp_path, ["--scenarios", "latency", "--repeat", "1", "--samples", "3"], 180)
    for daemon in ("bgpd", "bird"):
        (run,) = data["runs"]["latency"][daemon]
        assert len(run["samples_add_ms"]) == 3 and run["lost"] == 0
    assert "latency add → installed, p50" in (tmp_path / "results" / "latest.md").read_text()


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0 or not Path(BIRD).exists(), reason="needs root and BIRD 2")
def test_bench_latency6_smoke(tmp_path: Path) -> None:
    """The IPv6 path of the harness: IPv6 hosts, bgpd and BIRD peering over IPv6, /128 workload routes
    injected and watched over netlink in the IPv6 family."""
    data = _run_bench(tmp_path, ["--scenarios", "latency6", "--repeat", "1", "--samples", "3"], 180)
    assert data["errors"] == {}, data["errors"]
    for daemon in ("bgpd", "bird"):
        (run,) = data["runs"]["latency6"][daemon]
        assert run["family"] == 6 and len(run["samples_add_ms"]) == 3 and run["lost"] == 0
        assert len(run["samples_del_ms"]) == 3
    md = (tmp_path / "results" / "latest.md").read_text()
    assert "IPv6 latency add → installed, p50" in md and "| latency add" not in md
    bgpd_b = yaml.safe_load((tmp_path / "work" / "latency6-bgpd-0" / "hB" / "bgpd.yaml").read_text())
    assert bgpd_b["node"]["address6"] == "fd00:100::11" and bgpd_b["pools"] == [{"cidr": scenarios.V6.pool}]


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0 or not Path(BIRD).exists(), reason="needs root and BIRD 2")
def test_bench_latency_active_smoke(tmp_path_factory: pytest.TempPathFactory) -> None:
    """latency-active: both hosts connect (bgpd: two active `bgp.peers`; BIRD: no `passive on`), one
    connection carries the session, routes go through (~6 s)."""
    tmp_path = tmp_path_factory.mktemp("la")  # short: bgpd's sockets live under it (AF_UNIX: 107 bytes)
    data = _run_bench(tmp_path, ["--scenarios", "latency-active", "--repeat", "1", "--samples", "3"], 180)
    assert data["errors"] == {}, data["errors"]
    for daemon in ("bgpd", "bird"):
        (run,) = data["runs"]["latency-active"][daemon]
        assert run["peering"] == "active" and run["lost"] == 0
        assert len(run["samples_add_ms"]) == 3 and len(run["samples_del_ms"]) == 3
        assert run["session_opened_by"] in ("hA", "hB")  # one established connection, either side's
    work = tmp_path / "work"
    for host in ("hA", "hB"):
        bgp = yaml.safe_load((work / "latency-active-bgpd-0" / host / "bgpd.yaml").read_text())["bgp"]
        assert "mesh" not in bgp and [p["passive"] for p in bgp["peers"]] == [False]
        assert "passive" not in (work / "latency-active-bird-0" / host / "bird.conf").read_text()
    assert (
        "latency, both hosts active add → installed, p50" in (tmp_path / "results" / "latest.md").read_text()
    )
