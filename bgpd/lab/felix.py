"""Felix's part of IP-in-IP in the lab: the `tunl0` device of one host, and its userspace stand-in.

On a Calico host with an IP-in-IP pool, Felix owns `tunl0`: the kernel's ipip device (remote any), with the
host's tunnel address (a /32 of its block), MTU = underlay MTU - 20 (the outer IPv4 header), up. bgpd only
installs routes through it. This module does what Felix does, one namespace at a time:

* `tunnel_kind` probes whether the kernel has IP-in-IP (`KERNEL_IPIP`) or not (`TUN_STAND_IN`: this
  project's machines, whose kernel has no ipip, gre or dummy devices and no modules);
* `add_tunnel` creates and configures `tunl0` of that kind; the stand-in is a TUN device named `tunl0`
  (same address, MTU and state), and `start_encapsulator` starts the process that does the ipip device's
  encapsulation for it (`bgpd.lab.ipip`, by pid, in its own session so it outlives `bgpd lab up`);
  `attached` says when that process holds the device (its carrier is up);
* `counters` and `tunnel_mtu` read what a user checks (`ip -s link show tunl0`).

The lab (`bgpd.lab.lab.Lab`) decides when, records the pids and stops them; nothing here touches a
namespace it was not given.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from bgpd.lab import netns

TUNNEL = "tunl0"  # Felix's IP-in-IP device
IPIP_OVERHEAD = 20  # the outer IPv4 header: tunl0's MTU is the underlay's minus this
ENCAPSULATOR_TIMEOUT = 10.0  # seconds for the encapsulators to attach to their TUN devices
KERNEL_IPIP = "ipip"  # tunnel kinds as recorded in the lab's state file
TUN_STAND_IN = "tun"
ENCAPSULATOR = b"bgpd.lab.ipip"  # in the encapsulator's command line


class TunnelError(RuntimeError):
    """`tunl0` exists but is not what Felix would have made."""


@dataclass(frozen=True, slots=True)
class TunnelCounters:
    """A host's tunl0 packet counters: `out` = packets routed into tunl0 (encapsulated), `in_` = packets
    that came out of it (decapsulated)."""

    out: int
    in_: int

    def __sub__(self, other: TunnelCounters) -> TunnelCounters:
        return TunnelCounters(self.out - other.out, self.in_ - other.in_)


def tunnel_kind(ns: str) -> str:
    """KERNEL_IPIP if the kernel has IP-in-IP (it created `tunl0` in the new namespace `ns`, or can add an
    ipip device), else TUN_STAND_IN. A probe device added here is kept: it is that host's tunl0.
    TunnelError if `ns` holds a `tunl0` of another kind."""
    if not netns.link_exists(TUNNEL, ns):
        try:
            netns.ip("link", "add", TUNNEL, "type", "ipip", ns=ns)
        except netns.CommandError as exc:
            if netns.link_exists(TUNNEL, ns):  # loading the module created the fallback tunl0 meanwhile
                pass
            elif "Unknown device type" in str(exc) or "not supported" in str(exc).lower():
                return TUN_STAND_IN
            else:
                raise
    out = netns.ip("-d", "-j", "link", "show", "dev", TUNNEL, ns=ns)
    kind = json.loads(out)[0].get("linkinfo", {}).get("info_kind")
    if kind != "ipip":
        raise TunnelError(f"{ns} has a {TUNNEL} device of kind {kind!r}, not the kernel's ipip device")
    return KERNEL_IPIP


def add_tunnel(ns: str, address: IPv4Address, kind: str) -> None:
    """Felix's `tunl0` in `ns`: of `kind`, with `address`/32, MTU = eth0's - 20, up; IPv6 off on it, and
    reverse-path filtering off (a decapsulated reply from another host's own address arrives on tunl0 while
    the route back to that address leaves by eth0: strict filtering would drop it)."""
    if kind == TUN_STAND_IN:
        netns.ip("tuntap", "add", "dev", TUNNEL, "mode", "tun", ns=ns)
    elif not netns.link_exists(TUNNEL, ns):  # the kernel creates it in each namespace, or not
        netns.ip("link", "add", TUNNEL, "type", "ipip", ns=ns)
    netns.ip("link", "set", TUNNEL, "mtu", str(mtu(ns, "eth0") - IPIP_OVERHEAD), "up", ns=ns)
    netns.ip("addr", "add", f"{address}/32", "dev", TUNNEL, ns=ns)
    with contextlib.suppress(netns.CommandError):  # tunl0 carries IPv4 only (absent without IPv6)
        netns.sysctl(ns, f"net.ipv6.conf.{TUNNEL}.disable_ipv6", "1")
    netns.sysctl(ns, "net.ipv4.conf.all.rp_filter", "0")
    netns.sysctl(ns, f"net.ipv4.conf.{TUNNEL}.rp_filter", "0")


def start_encapsulator(ns: str, log_path: Path) -> int:
    """Start the stand-in's encapsulator in `ns` (its output appended to `log_path`); its pid."""
    argv = [sys.executable, "-m", "bgpd.lab.ipip", "--device", TUNNEL]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives `bgpd lab up`; `down` ends it by pid
        )
    return proc.pid


def attached(ns: str) -> bool:
    """Does a process hold the stand-in `tunl0` of `ns` (the TUN device has a carrier)?"""
    out = netns.ip("-j", "link", "show", "dev", TUNNEL, ns=ns, check=False)
    return bool(out.strip()) and "LOWER_UP" in json.loads(out)[0].get("flags", [])


def counters(ns: str) -> TunnelCounters | None:
    """The packet counters of `tunl0` in `ns`, None without one."""
    text = netns.ip("-s", "-j", "link", "show", "dev", TUNNEL, ns=ns, check=False)
    if not text.strip():
        return None
    stats = json.loads(text)[0]["stats64"]
    return TunnelCounters(stats["tx"]["packets"], stats["rx"]["packets"])


def tunnel_mtu(ns: str) -> int | None:
    """The MTU of `tunl0` in `ns`, None without one."""
    return mtu(ns, TUNNEL) if netns.link_exists(TUNNEL, ns) else None


def mtu(ns: str, dev: str) -> int:
    return int(json.loads(netns.ip("-j", "link", "show", "dev", dev, ns=ns))[0]["mtu"])
