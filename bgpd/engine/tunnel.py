"""IP-in-IP (issue 12): the kernel form of a learned route, and the export rule for tunnel routes. No I/O.

Calico's IP pools carry an `ipipMode`: `never`, `always` or `cross-subnet`. BIRD's `krt_tunnel` (Calico's
fork) installs a learned route of an `always` pool as `via NEXT_HOP dev tunl0 onlink`, and one of a
`cross-subnet` pool the same way when the next hop is outside this node's underlay subnet (a plain
`via NEXT_HOP`, the kernel choosing the device, when it is inside). This module owns that decision:

* `TunnelPlan` is built once per configuration from the pools' `(cidr, mode)`, this node's underlay address
  with its prefix length (`192.168.100.10/24`: the local subnet that decides `cross-subnet`; an unknown
  length is `/32`, so every other node counts as remote and is reached through the tunnel, which works
  everywhere) and the tunnel device's name (Felix's `tunl0`). `TunnelPlan.hops(prefix, gateways)` gives
  the route's kernel next hops, one per selected next hop, in the same order: the gateway itself where it
  is plain, `Hop(gateway, "tunl0", onlink=True)` where it is tunnelled (the installer's form).
* A pool with a `vxlan` mode other than `never` (`vxlan` below) is Felix's to program: `hops` answers
  None, bgpd installs nothing for its prefixes (it still exports them: export does not ask this module).
* ECMP routes are decided per next hop: a route with one next hop in the local subnet and one behind a
  router gets a plain hop and a tunnelled one. (Calico's BIRD drops the tunnel on multipath routes, Calico
  issue 4462; bgpd must not.)
* `always` tunnels every next hop, one inside the local subnet too (as Calico's `Always` does).
* A prefix is in the longest pool that covers it (Calico's pools do not overlap; if they do, the most
  specific one decides, so a `never` pool inside an `always` one stays plain). A prefix in no pool, an
  IPv6 prefix (Calico has no IP-in-IP for IPv6; configuration rejects `ipip` on an IPv6 pool) and a next hop
  of the other family (an IPv4 route via an IPv6 next hop cannot be wrapped in IPv4) are plain.
* `is_own_tunnel_route`: a route of bgpd's own protocol via the tunnel device is never exported again
  (Calico rejects `tunl0` routes on iBGP export for the same reason: the tunnel route is this node's copy
  of another node's route).

It runs on every route change of the 100k-route path, so nothing here builds an `ipaddress` object per
call: the prefix is matched through its family-tagged key (`bgpd.prefix.bits`, the pools precomputed as
`(network, mask, length)` ints), a next hop through its int against the local subnet's precomputed network
and mask, and the answer for a `(mode, next hops)` pair is memoized (a node sees few distinct next-hop
sets: one per peer node or ECMP combination), so a repeated pair costs two dict lookups.

The engine calls `hops` for every selection change when some pool tunnels (`active`), and rebuilds the
plan on a reload; the installer writes the hops as they are (`via G dev tunl0 onlink` per tunnelled hop).
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Interface, IPv4Network, IPv6Network
from typing import Final, Literal

from bgpd.config import ENCAP_MODES, EncapMode
from bgpd.model import Address, Hop, KernelRoute
from bgpd.prefix import bits, covers

IpipMode = EncapMode
IPIP_MODES: Final[tuple[IpipMode, ...]] = ENCAP_MODES
TUNNEL_DEVICE: Final = "tunl0"

KernelHops = tuple[Address | Hop, ...]  # a route's next hops as the installer takes them

# a mode as an int in the hot path (an index into TunnelPlan._memo)
_NEVER: Final = 0
_ALWAYS: Final = 1
_CROSS_SUBNET: Final = 2
_FELIX: Final = 3  # a VXLAN pool: Felix programs its routes, bgpd installs none
_MODE_CODES: Final[dict[str, int]] = {"never": _NEVER, "always": _ALWAYS, "cross-subnet": _CROSS_SUBNET}

# memoized (next hops) -> hops per mode; cleared when it grows past this (only a pathological churn of
# distinct next-hop sets gets there)
_MEMO_LIMIT: Final = 65536


class TunnelPlan:
    """The kernel form of learned routes for one configuration: which next hops go through the tunnel.

    `pools` are `(cidr, mode)` pairs of either family (IPv6 pools are plain whatever their mode: validating
    the configuration is the config's job); `local` is this node's underlay address with the local subnet's
    length; `device` the tunnel device's name."""

    __slots__ = ("_device", "_local", "_local_mask", "_local_net", "_memo", "_pools")

    def __init__(
        self,
        pools: Iterable[tuple[IPv4Network | IPv6Network, IpipMode]],
        local: IPv4Interface,
        device: str = TUNNEL_DEVICE,
        vxlan: Iterable[IPv4Network | IPv6Network] = (),
    ) -> None:
        entries: list[tuple[int, int, int, int]] = []  # (network, mask, length, mode code), IPv4 only
        vxlan = tuple(vxlan)
        for cidr, mode in pools:
            if mode not in _MODE_CODES:
                raise ValueError(f"unknown ipip mode {mode!r} for pool {cidr} (expected one of {IPIP_MODES})")
            if cidr.version != 4 or (cidr in vxlan and mode == "never"):  # a VXLAN pool is Felix's
                continue
            entries.append((int(cidr.network_address), int(cidr.netmask), cidr.prefixlen, _MODE_CODES[mode]))
        for cidr in vxlan:
            if cidr.version == 4:
                entries.append((int(cidr.network_address), int(cidr.netmask), cidr.prefixlen, _FELIX))
            else:  # kept as its bgpd.prefix key, marked by mask -1
                key, length = bits(cidr)
                entries.append((key, -1, length, _FELIX))
        entries.sort(key=lambda entry: -entry[2])  # the longest pool that covers a prefix decides
        # with no pool that tunnels, every route is plain: skip the pool scan altogether
        self._pools: tuple[tuple[int, int, int, int], ...] = (
            tuple(entries) if any(entry[3] != _NEVER for entry in entries) else ()
        )
        self._local_net = int(local.network.network_address)
        self._local_mask = int(local.network.netmask)
        self._device = device
        self._memo: tuple[dict[tuple[Address, ...], KernelHops], ...] = ({}, {}, {})
        self._local = local

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TunnelPlan):
            return NotImplemented
        return (self._pools, self._local, self._device) == (other._pools, other._local, other._device)

    __hash__ = None  # type: ignore[assignment]

    @property
    def active(self) -> bool:
        """Does any pool tunnel or belong to Felix? (If not, every route is installed as selected.)"""
        return bool(self._pools)

    @property
    def device(self) -> str:
        """The tunnel device's name."""
        return self._device

    def mode(self, prefix: IPv4Network | IPv6Network) -> IpipMode | Literal["vxlan"]:
        """The ipip mode that applies to a learned prefix: its pool's (the longest that covers it), or
        "never" for a prefix in no pool, an IPv6 prefix, or when no pool tunnels; "vxlan" for a prefix of a
        pool Felix programs."""
        code = self._mode_code(prefix)
        return "vxlan" if code == _FELIX else IPIP_MODES[code]

    def hops(self, prefix: IPv4Network | IPv6Network, gateways: tuple[Address, ...]) -> KernelHops | None:
        """The kernel next hops of a learned route to `prefix` via `gateways` (its selected next hops, sorted
        as the engine keeps them): one per gateway, in order, `Hop(gateway, device, onlink=True)` where the
        prefix's pool mode and the gateway's place (inside or outside the local subnet) say so, else the
        gateway itself. None for a prefix of a VXLAN pool (Felix's: bgpd installs nothing)."""
        code = self._mode_code(prefix)
        if code == _NEVER:
            return gateways
        if code == _FELIX:
            return None
        memo = self._memo[code]
        result = memo.get(gateways)
        if result is None:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            result = memo[gateways] = self._decide(code, gateways)
        return result

    def _mode_code(self, prefix: IPv4Network | IPv6Network) -> int:
        if not self._pools:
            return _NEVER
        net, length = bits(prefix)
        if length < 0:  # an IPv6 key (bgpd.prefix): never tunnelled; Felix's if in a VXLAN pool
            for pool_key, pool_mask, pool_length, code in self._pools:
                if pool_mask == -1 and covers((pool_key, pool_length), (net, length)):
                    return code
            return _NEVER
        for pool_net, pool_mask, pool_length, code in self._pools:
            if pool_mask != -1 and length >= pool_length and net & pool_mask == pool_net:
                return code
        return _NEVER

    def _decide(self, code: int, gateways: tuple[Address, ...]) -> KernelHops:
        device = self._device
        hops: list[Address | Hop] = []
        for gateway in gateways:
            if gateway.version != 4:
                tunnel = False
            elif code == _ALWAYS:
                tunnel = True
            else:  # cross-subnet: only the next hops a router stands in front of
                tunnel = int(gateway) & self._local_mask != self._local_net
            hops.append(Hop(gateway, device, True) if tunnel else gateway)
        return tuple(hops)


def is_own_tunnel_route(route: KernelRoute, protocol: int, device: str = TUNNEL_DEVICE) -> bool:
    """Is this kernel route one of bgpd's own (`protocol`, the configured kernel protocol) through the tunnel
    device? Such a route is never exported again. (`KernelRoute.ifname` is the device of a single-path
    route only: a multipath route via the tunnel is reported without one.)"""
    return route.protocol == protocol and route.ifname == device
