"""BIRD 2 configurations used as the reference: a Calico host, a Calico route reflector, reflector clients.

Translated from Calico's confd templates (``confd/etc/calico/confd/templates/bird.cfg.template``,
``bird_ipam.cfg.template``, ``bird_aggr.cfg.template``), which target Calico's BIRD 1.6 fork, into BIRD 2
syntax (channels). Kept: the kernel protocol (``learn``, ``persist``, ``scan time 2``, ``graceful restart``,
``merge paths on``), the device protocol (``scan time 2``), the direct protocol (every interface but
``cali*``; it makes the peers' addresses resolvable for ``gateway recursive``), the BGP template
(``multihop``, ``gateway recursive``, ``add paths on``, ``graceful restart``, connect delay 1 s, retry 3 s,
error wait 5..60 s, restart time 120 s, the higher address passive), and the filters:

- ``calico_export_to_bgp_peers``: accept a route inside an IP pool, reject the rest (no disabled pools, no
  tunnel routes, no blocks to aggregate in the benchmark, so ``calico_aggr`` is empty);
- ``calico_kernel_programming``: accept (a pool without IP-in-IP/VXLAN: ``krt_tunnel = ""``, then accept);
- import from peers: accept everything (Calico's ``import all``).

Left out (no effect on what is measured): BFD (Calico's ``protocol bfd``; no ``bfd graceful`` here),
logging, communities, IP-in-IP. One addition: the kernel protocol imports only routes of protocols boot (3)
and 80 (Felix's workload routes and blocks), the same selection as bgpd's ``export.protocols``; Calico
imports every alien route and lets the export filter keep those inside a pool, which for the routes of the
benchmark is the same set.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address


def _filters(pool: str) -> str:
    return f"""
filter calico_kernel_programming {{
  # Calico: a pool without IP-in-IP/VXLAN sets krt_tunnel = "" (an attribute of its fork) and accepts
  accept;
}}

filter calico_export_to_bgp_peers {{
  if ( net ~ {pool} ) then {{
    accept;
  }}
  reject;
}}
"""


def _channel(address: str) -> str:
    """BIRD 2's channel for the family of `address`: ipv4 or ipv6."""
    return "ipv6" if ":" in address else "ipv4"


def _template(asn: int, export_filter: str, channel: str = "ipv4") -> str:
    return f"""
template bgp bgp_template {{
  description "Connection to BGP peer";
  local as {asn};
  multihop;
  {channel} {{
    gateway recursive;
    import all;
    export filter {export_filter};
    add paths on;
  }};
  graceful restart;
  connect delay time 1;
  connect retry time 3;
  error wait time 5,60;
}}
"""


def _header(channel: str = "ipv4") -> str:
    return f"""
log stderr {{ info, remote, warning, error, auth, fatal, bug }};

protocol device {{
  scan time 2;
}}

protocol direct {{
  {channel};
  interface -"cali*", "*";
}}
"""


HEADER = _header()


def host(
    address: str,
    peers: Sequence[str],
    pool: str,
    asn: int,
    router_id: str | None = None,
    both_active: bool = False,
) -> str:
    """A Calico node in the node-to-node mesh with `peers`. IPv6 addresses (and pool): the IPv6 mesh of
    Calico's bird6, in BIRD 2 syntax; `router_id` (IPv4) is then required (ValueError without).

    `both_active`: no `passive on` on either side (BIRD's default for `neighbor ... as ...`), so both
    hosts connect and BGP's collision detection (RFC 4271 section 6.8) keeps one connection: the peering
    of the latency-active scenario."""
    channel = _channel(address)
    if channel == "ipv6" and router_id is None:
        raise ValueError("an IPv6 BIRD host needs an IPv4 router id")
    sessions = []
    for peer in peers:
        passive = "\n  passive on;" if _key(peer) > _key(address) and not both_active else ""
        sessions.append(
            f"""
protocol bgp Mesh_{peer.replace(".", "_").replace(":", "_")} from bgp_template {{
  neighbor {peer} as {asn};
  source address {address};{passive}
  graceful restart time 120;
}}"""
        )
    filters = _filters(pool)
    source = "bird6.cfg.template" if channel == "ipv6" else "bird.cfg.template"
    return f"""# bgpd benchmark: a Calico host (confd {source}, BIRD 2 syntax)
router id {router_id or address};
{filters}
protocol kernel {{
  learn;             # Learn all alien routes from the kernel
  persist;           # Don't remove routes on bird shutdown
  scan time 2;       # Scan kernel routing table every 2 seconds
  {channel} {{
    import where krt_source = 3 || krt_source = 80;   # Felix: workload routes (boot) and blocks (80)
    export filter calico_kernel_programming;
  }};
  graceful restart;
  merge paths on;    # Allow export multipath routes (ECMP)
}}
{_header(channel)}{_template(asn, "calico_export_to_bgp_peers", channel)}{"".join(sessions)}
"""


def reflector(address: str, clients: Sequence[str], pool: str, asn: int, cluster_id: str) -> str:
    """A Calico route reflector (a node with a cluster id: `rr client; rr cluster id`), installing nothing,
    as the bgpd reflector under test (`kernel.install: false`)."""
    sessions = "".join(
        f"""
protocol bgp Node_{c.replace(".", "_")} from bgp_template {{
  neighbor {c} as {asn};
  source address {address};
  graceful restart time 120;
  rr client;
  rr cluster id {cluster_id};
}}"""
        for c in clients
    )
    return f"""# bgpd benchmark: a Calico route reflector (BIRD 2 syntax), no kernel programming
router id {address};
{_filters(pool)}
{HEADER}{_template(asn, "calico_export_to_bgp_peers")}{sessions}
"""


def client(address: str, reflector_address: str, routes: Sequence[str], pool: str, asn: int) -> str:
    """A reflector client announcing `routes` (a static protocol, disabled until the harness enables it).

    Learned routes stay in BIRD's table (no kernel protocol): the measurement is the reflector's, and 50
    clients writing 9,800 kernel routes each would only compete with it for the CPUs."""
    statics = "\n".join(f"  route {p} blackhole;" for p in routes)
    return f"""# bgpd benchmark: a route-reflector client
router id {address};
{_filters(pool)}
protocol static workloads {{
  disabled;
  ipv4;
{statics}
}}
{HEADER}{_template(asn, "calico_export_to_bgp_peers")}
protocol bgp reflector from bgp_template {{
  neighbor {reflector_address} as {asn};
  source address {address};
  graceful restart time 120;
}}
"""


def _key(address: str) -> int:
    return int(ip_address(address))
