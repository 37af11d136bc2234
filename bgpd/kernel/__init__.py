"""The kernel side of bgpd: the only package that speaks netlink.

* `RouteWatcher` reports the IPv4 routes of one table (snapshot, then add/remove events, re-reading
  the table on overflow and a device's routes on link loss);
* `RouteInstaller` installs, replaces and deletes the routes bgpd owns (its rtm_protocol) and never
  touches another protocol's routes;
* `local_addresses` lists this host's IPv4 addresses.
"""

from bgpd.kernel.addresses import local_addresses
from bgpd.kernel.installer import InstallError, OpResult, RouteInstaller
from bgpd.kernel.watcher import (
    LinkLost,
    LinkUp,
    RouteAdded,
    RouteEvent,
    RouteRemoved,
    RouteWatcher,
    Snapshot,
)

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
    "local_addresses",
]
