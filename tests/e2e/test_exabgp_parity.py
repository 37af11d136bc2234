"""bgpd's changes to ExaBGP (bgpd.exabgp.launch) change nothing a peer can see: the same workload through a
route reflector, run at the same time in two identical networks, one with every ExaBGP patched and one with
every ExaBGP unpatched (`BGPD_EXABGP_UNPATCHED=1`), leaves the client with the very same routes, paths and
attributes (next hop, originator id, cluster list, local preference, AS path, ...: bgpctl's whole route
table) and the same kernel routes, in IPv4 and IPv6, after the announcements and again after the
withdrawals. That the unpatched ExaBGPs did run unpatched shows in what they sent: one UPDATE per IPv6 route
(change 9 groups them), counted by the receiving bgpd for the sender's and for the reflector's ExaBGP."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bgpd.lab.netns import Fabric, wait_for
from tests.e2e.conftest import ASN, Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 60.0
ROUTES4 = [f"10.20.{i // 250}.{i % 250 + 1}/32" for i in range(600)]
ROUTES6 = [f"fd00:10:20:1::{i + 1:x}/128" for i in range(600)]
BLOCK4, BLOCK6 = "10.20.100.0/24", "fd00:10:20:100::/120"
GONE4, GONE6 = ROUTES4[::3], ROUTES6[::3]


@contextmanager
def _second_underlay(workdir: Path) -> Iterator[Underlay]:
    """Another underlay, as the `underlay` fixture builds one: its own namespaces, so the same addresses."""
    fabric = Fabric(prefix=f"bgpdt{secrets.token_hex(3)}-")
    try:
        yield Underlay(fabric, workdir)
    finally:
        logs = [(p.name, p.log_tail(15)) for p in fabric.processes]
        fabric.close()
        for name, tail in logs:
            sys.stderr.write(f"--- {name} (last lines) ---\n{tail}\n")


@dataclass
class World:
    """A reflector `rr` and its clients `h0` (announces) and `h1` (receives), dual stack, sessions over
    IPv4 and IPv6, all three bgpd (and their ExaBGPs) patched or unpatched."""

    unpatched: bool
    rr: Host
    h0: Host
    h1: Host

    @classmethod
    def start(cls, underlay: Underlay, unpatched: bool) -> World:
        rr = underlay.host("rr", 2, ipv6=True)
        h0, h1 = underlay.host("h0", 10, ipv6=True), underlay.host("h1", 11, ipv6=True)
        pools = [{"cidr": "10.20.0.0/16"}, {"cidr": "fd00:10:20::/48"}]
        clients = [h0.address, h1.address, h0.address6, h1.address6]
        rr.write_config(
            node={"name": "rr", "address": rr.address, "address6": rr.address6, "asn": ASN},
            bgp={"hold_time": 9},
            reflector={"cluster_id": "1.0.0.1", "clients": clients},
            pools=pools,
        )
        peers = [{"address": rr.address, "asn": ASN}, {"address": rr.address6, "asn": ASN}]
        for h in (h0, h1):
            h.write_config(
                node={"name": h.name, "address": h.address, "address6": h.address6, "asn": ASN},
                bgp={"hold_time": 9, "peers": peers},
                pools=pools,
            )
        for h in (rr, h0, h1):
            h.start_bgpd({"BGPD_EXABGP_UNPATCHED": "1" if unpatched else "0"})
        return cls(unpatched, rr, h0, h1)

    @property
    def name(self) -> str:
        return "unpatched" if self.unpatched else "patched"

    def run(self, verb: str, routes4: list[str], routes6: list[str]) -> None:
        """`ip route add` (`del`) of workload routes on h0, one batch per family."""
        for flag, routes, scope in (("-4", routes4, " scope link"), ("-6", routes6, "")):
            batch = self.h0.workdir / f"{verb}{flag}.batch"
            batch.write_text("".join(f"route {verb} {r} dev cali0 proto boot{scope}\n" for r in routes))
            self.h0.ip(flag, "-batch", str(batch))

    def on_h1(self) -> tuple[set[str], set[str]]:
        return set(self.h1.bird_routes(4)), set(self.h1.bird_routes(6))

    def holds(self, wanted: tuple[set[str], set[str]]) -> Callable[[], bool]:
        """A condition for `wait_for`: h1's kernel has exactly these IPv4 and IPv6 routes from bgpd."""
        return lambda: self.on_h1() == wanted

    def seen(self) -> dict[str, Any]:
        """What the client ended with: bgpctl's routes (every path, every attribute), the kernel's."""
        return {
            "routes": self.h1.ctl_json("show", "routes"),
            "kernel4": self.h1.bird_routes(4),
            "kernel6": self.h1.bird_routes(6),
        }

    def updates_received(self) -> dict[str, int]:
        """UPDATEs received over the IPv6 sessions: by the reflector from h0, by h1 from the reflector."""
        [from_h0] = [p for p in self.rr.ctl_json("show", "peers") if p["address"] == self.h0.address6]
        [from_rr] = [p for p in self.h1.ctl_json("show", "peers") if p["address"] == self.rr.address6]
        return {"h0 -> rr": from_h0["updates_received"], "rr -> h1": from_rr["updates_received"]}


def _bare(routes: list[str]) -> set[str]:
    return {r.removesuffix("/32").removesuffix("/128") for r in routes}


def test_patched_and_unpatched_exabgp_give_the_client_the_same_routes(underlay: Underlay) -> None:
    with _second_underlay(underlay.workdir / "unpatched") as other:
        worlds = [World.start(underlay, unpatched=False), World.start(other, unpatched=True)]
        for world in worlds:
            world.run("add", ROUTES4, ROUTES6)
            world.h0.add_block(BLOCK4)
            world.h0.add_block(BLOCK6)
        announced = (_bare(ROUTES4) | {BLOCK4}, _bare(ROUTES6) | {BLOCK6})
        for world in worlds:
            wait_for(world.holds(announced), CONVERGE, f"every route on h1, {world.name}")
        patched, unpatched = (world.seen() for world in worlds)
        assert patched == unpatched
        # the client holds what was sent, as h0 sent it, reflected (RFC 4456 §8)
        [path] = next(r for r in patched["routes"] if r["prefix"] == "fd00:10:20:1::1/128")["paths"]
        h0, rr = worlds[0].h0, worlds[0].rr
        assert (path["from"], path["next_hop"], path["originator_id"]) == (
            rr.address6,
            h0.address6,
            h0.address,
        )
        assert (path["cluster_list"], path["local_pref"]) == (["1.0.0.1"], 100)
        assert all(hops == [h0.address] for hops in patched["kernel4"].values())
        assert all(hops == [h0.address6] for hops in patched["kernel6"].values())
        # withdraw a third, then the blocks
        for world in worlds:
            world.run("del", GONE4, GONE6)
            world.h0.ip("route", "del", "blackhole", BLOCK4)
            world.h0.ip("-6", "route", "del", "blackhole", BLOCK6)
        left = (announced[0] - _bare(GONE4) - {BLOCK4}, announced[1] - _bare(GONE6) - {BLOCK6})
        for world in worlds:
            wait_for(world.holds(left), CONVERGE, f"withdrawals on h1, {world.name}")
        patched, unpatched = (world.seen() for world in worlds)
        assert patched == unpatched
        assert len(patched["routes"]) == len(left[0]) + len(left[1])
        # unpatched ExaBGP sends each IPv6 route in an UPDATE of its own (the sender's to the reflector, the
        # reflector's to the client); patched, the routes of one attribute set go together (change 9)
        one_each = len(ROUTES6) + 1 + len(GONE6) + 1
        counted = [world.updates_received() for world in worlds]
        assert counted[1] == {"h0 -> rr": one_each, "rr -> h1": one_each}
        assert all(n <= 40 for n in counted[0].values()), counted
