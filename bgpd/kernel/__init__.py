"""The kernel side of bgpd: the only package that speaks netlink.

* `RouteWatcher` reports the routes of one table (snapshot, then add/remove events, re-reading
  the table on overflow and a device's routes on link loss): IPv4 only unless asked for IPv6 too;
* `RouteInstaller` installs, replaces and deletes the routes bgpd owns (its rtm_protocol), IPv4 and IPv6,
  and never touches another protocol's routes;
* `local_addresses` lists this host's addresses (IPv4 unless asked for IPv6 too); `address_network` the
  interface and subnet of one of them.

IPv6 prefixes and addresses are `ipaddress` types (chosen in `_inet6.network`/`_inet6.gateway`);
link-local IPv6 gateways carry their device as scope (`IPv6Address("fe80::1%eth0")`). The event and
result types live in `bgpd.model` (the engine reads them without importing this package).
"""

from bgpd.kernel.addresses import address_network, local_addresses
from bgpd.kernel.installer import InstallError, RouteInstaller
from bgpd.kernel.watcher import RouteWatcher
from bgpd.model import LinkLost, LinkUp, OpResult, RouteAdded, RouteEvent, RouteRemoved, Snapshot

__all__ = [
    "InstallError",
    "LinkLost",
    "LinkUp",
    "OpResult",
    "RouteAdded",
    "RouteEvent",
    "RouteInstaller",
    "RouteRemoved",
    "RouteWatcher",
    "Snapshot",
    "address_network",
    "local_addresses",
]
