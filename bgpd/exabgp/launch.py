"""Starts ExaBGP (`python -m bgpd.exabgp.launch server CONF`) with seventeen narrowly scoped changes: nine
to how it parses API commands and builds UPDATEs, one (10) that gives a session the keepalive interval
bgpd's config asks for, one (11) that makes TTL security hold on the listening side, one (12) that makes an
API teardown send its NOTIFICATION, one (13) that keeps a reload from being dropped while routes are
queued, two (14, 15) that make a route command for many neighbors cost once per route, not once per
route and neighbor, one (16) that keeps a closed connection from slowing the reactor, and one (18) that
keeps two speakers that connect to each other from closing both connections. Profiles of
ExaBGP 5.0.15 announcing 10k routes (1-3), 100k routes and reflecting 50 x 200 routes (4-8, 14, 15), and
100k IPv6 routes (9) showed:

1. `Neighbor.remove_self` deep-copies every route for every neighbor (about half of all CPU time), only to
   be able to replace a `next-hop self`. bgpd always sends an explicit next hop for announcements, so the
   copy is skipped when the route's next hop is not "self"; the route object is then shared by the
   neighbors' Adj-RIBs-Out, which never mutate a stored route in place (withdrawals deep-copy before
   changing the action, as before).
2. `ASYNC.run` wraps every 50 generator steps of API work in a brand-new asyncio event loop
   (`asyncio.run`). When no coroutine is queued, the same generators are stepped directly, up to
   `STEPS_PER_PASS` per reactor pass.
3. The reactor then waits up to 10 ms in `poll()` even when API work is still queued; with work queued it
   now polls without waiting, so queued routes are processed back to back while sockets stay serviced
   every pass.
4. The API command parser (`configuration.core.format.tokens`) walks every character of a command in
   Python; a 100k-prefix `announce attributes ... nlri` spends a sixth of the sending ExaBGP's time there.
   Lines without quotes, escapes or comments are now split by one regular expression into the very same
   (line, column, word) tokens and the same errors; from the first line that has one of those on, the
   original tokenizes the rest (an API command is one line; configuration files mostly take the original).
5. `Update._split_nlris` sorts the NLRIs of every UPDATE with `NLRI.__lt__`, which builds both operands'
   index bytes on every comparison (2·n·log n packs per UPDATE per neighbor: a reflector sending 200
   routes to 49 clients spent a quarter of its time there). For UPDATEs of plain IPv4 unicast routes (all
   bgpd sends) the same order now comes from one sort key per NLRI, and the same split (everything in the
   IPv4 fields, nothing multiprotocol); any other UPDATE goes through the original.
6. `AFI.create` / `SAFI.create` construct a throw-away AFI/SAFI object even when the value is cached (the
   `dict.get` default is evaluated eagerly), several times per route per neighbor; a cached value is now
   returned without building one.
7. `match_neighbors` runs a regular expression per (target, neighbor) for every targeted command (2,450
   per reflected batch with 50 clients); `match_neighbor` is a pure function of two strings, so its
   answers are now remembered (bounded).
8. `_Configuration.inject_change` tests `neighbor in peers` against a list for every neighbor and every
   route (O(neighbors x targets) per route); it is handed the same names as a frozenset.
9. `OutgoingRIB.updates` groups the queued changes that share an attribute set into one `Update` for IPv4
   unicast (when the neighbor groups updates, ExaBGP's default), but yields one `Update` per IPv6 unicast
   route: 100k IPv6 routes left in 100k UPDATE messages (13 s of the receiving ExaBGP's CPU against 0.9 s
   for IPv4, 100k events for bgpd). The original's output is now coalesced: a run of single-route IPv6
   unicast `Update`s carrying the very same attributes object (one attribute-set bucket of the original)
   becomes one `Update` of its withdrawals, then one of its announcements, which `Update.messages` packs
   into MP_UNREACH_NLRI / MP_REACH_NLRI messages as it does for ExaBGP's own grouped families (one message
   per next hop and per 4096 octets; withdrawals without path attributes, first). Nothing is coalesced
   when the neighbor does not group updates, nor in a call that carries a route refresh (whose changes and
   markers go out exactly as before). The NLRIs of such an UPDATE are ordered as in 5, with one sort key
   each (the original's pairwise comparison took 0.25 s per 10k NLRIs per neighbor).

10. ExaBGP has no keepalive setting: a session sends a KEEPALIVE every `int(negotiated hold time / 3)`
   seconds (`HoldTime.keepalive`, read once by the `SendTimer` of the session's `KA`). Calico's BGPPeer
   keepaliveTime is BIRD's `keepalive time`, which BIRD (2.0.11 on, `bgp_rx_open`) scales with the
   negotiated hold time: `keepalive * negotiated / offered` (integer seconds, at least 1), so a peer that
   lowers the hold time gets keepalives in the same proportion. After `KA.__init__`, the `SendTimer` of a
   session whose peer address has a keepalive time in bgpd's keepalive file gets that interval
   (`keepalive_interval`); every other session keeps ExaBGP's own value (the very same `keepalive()` is
   assigned again). The values cannot travel in ExaBGP's config (a keyword ExaBGP does not know is an
   error, and a changed neighbor block resets the session) nor in the environment (fixed when ExaBGP
   starts, while bgpd reloads ExaBGP's config in place): bgpd writes them to a small JSON file next to
   its config at start and at every reload (`{"peer address": seconds}`, path in `BGPD_EXABGP_KEEPALIVE`),
   read whenever a session's timer is built, so each establishment and each restarted ExaBGP sees the
   current file. When a reload changes the file, bgpd sends `KEEPALIVE_SIGNAL` (SIGWINCH: ExaBGP does not
   use it and its default is to ignore it; not ExaBGP's SIGUSR1, which re-reads every neighbor): the file
   is read again and every live timer gets its interval at once, without touching the session (`need_ka`
   reads the interval on every call).

11. TTL security (GTSM, RFC 5082 §3; Calico's ttlSecurity): a neighbor with `incoming-ttl` gets IP_MINTTL
   (IPV6_MINHOPCOUNT) and a sending TTL of 255 on the connections it opens itself, but ExaBGP's main
   listening sockets (`exabgp.tcp.bind`, where bgpd's peers connect) get neither: any TTL gets in there,
   and a SYN-ACK leaves with the default TTL 64, so a peer that checks TTL never connects to a passive
   ExaBGP. One listening socket serves every neighbor of its address, with different needs (some without
   TTL security, some N hops away), while IP_MINTTL is one number per socket: on the listener it would
   refuse every farther neighbor, and set on the accepted socket it comes too late (the handshake is done
   and the peer's OPEN may already be queued when ExaBGP accepts). So after every (re)load of the
   configuration, a main listening socket behind which some neighbor has `incoming-ttl` gets
   - a classic BPF socket filter (`gtsm_program`) that drops, in the kernel, each segment from such a
     neighbor's address whose TTL (hop limit) is below that neighbor's minimum and keeps every other
     segment: a too-distant SYN gets no answer at all, as with IP_MINTTL, and the accepted sockets inherit
     the filter, so every later segment of the session is checked too;
   - a sending TTL (hop limit) of 255, so that the SYN-ACK carries 255 (as BIRD's listening socket does);
   and an accepted connection of a neighbor with `incoming-ttl` also gets IP_MINTTL (IPV6_MINHOPCOUNT), the
   kernel's own check, before ExaBGP reads from it, while one of a neighbor without it gets the kernel's
   default TTL back (it would inherit the listener's 255). ExaBGP already sends with 255 on an accepted
   connection of a GTSM neighbor. A listening socket behind which no neighbor has `incoming-ttl` is not
   touched (one that had them loses the filter and the TTL again). Range neighbors (never written by bgpd)
   get only the accepted socket's IP_MINTTL.

12. An API `teardown` ends the session with its NOTIFICATION (Cease / N) even when graceful restart was
   negotiated (ExaBGP closed such a session silently, which the peer takes for a graceful restart); bgpd
   sends one when a peer exceeds `max_prefixes` (RFC 4486). In its own module, `bgpd.exabgp.teardown`.
13. A configuration reload (SIGUSR1) is applied even while routes are queued in an Adj-RIB-Out, when the
   configuration holds no static routes (bgpd's never does): ExaBGP dropped the signal, so a neighbor added
   during a burst of routes never ran. In its own module, `bgpd.exabgp.reload`.
14. `announce attributes` / `withdraw attributes` put a command's routes into each targeted neighbor's
   Adj-RIB-Out in one step per neighbor, with the very entries ExaBGP's per-route `inject_change` ->
   `add_to_rib` made (a reflector with 50 clients spent 4.7 µs per route per client there); what depends
   on the route alone is computed once. A route's log line is only built when it will be written. Next hop
   `self`, a neighbor without the route's family, or the `rib` debug log: route by route, as before.
15. `Update.messages` remembers its messages, keyed by everything they are made of (the path attributes
   packed for the session, the NLRI objects with their action and next hop, the negotiated families,
   add-path and message size): the clients of an update group, which hold the very same route objects
   (change 1), get the same octets encoded once (1.5 µs per route per client before). Plain IPv4 / IPv6
   unicast only; bounded, least recently used first.
   14 and 15 are in their own module, `bgpd.exabgp.fanout`.
16. The reactor's poll set forgets a descriptor `poll()` reported as not open (POLLNVAL): a connection
   closed by a collision, a reset or a flap stayed registered, and every pass then slept 100 ms in
   `_prevent_spin` (two hosts that both connect: 100-300 ms per route instead of 2-4 ms). In its own
   module, `bgpd.exabgp.poller`.
18. A connection collision (RFC 4271 §6.8) before OpenConfirm is decided by the transport addresses both
   ends know: an incoming connection that arrives while our own attempt is under way is refused (Cease /
   Connection Collision Resolution) when our local address is the higher one; ExaBGP took the incoming one
   and closed its own on both ends, so two ExaBGPs connecting at once closed both connections again and
   again. In its own module, `bgpd.exabgp.collision`. (17 was a compact API command for bgpd's routes;
   measured at 0.01-0.05 ms of bgpd's latency, it was left out.)

Nothing else changes: the same code paths run in the same order, and a peer receives the same messages
but for 9's UPDATEs, which carry the same IPv6 routes, attributes and next hops in fewer messages, and 10's
KEEPALIVEs, at the configured interval where a keepalive time is set (11 changes no message, only which
TCP segments the listening side accepts and the TTL it sends with when a neighbor has TTL security; 14
fills the Adj-RIBs-Out neighbor by neighbor instead of route by route, to the same content, all of a
command's routes at its first step); the tests in
tests/kernel and tests/e2e run through this launcher, and tests/unit/test_exabgp_launch.py (14 and 15:
tests/unit/test_exabgp_fanout.py; 16: tests/unit/test_exabgp_poller.py; 18:
tests/unit/test_exabgp_collision.py) checks each change against the unpatched behaviour.
`BGPD_EXABGP_UNPATCHED=1` starts ExaBGP unchanged (for comparison; it ignores keepalive times, and TTL
security holds only on the connections ExaBGP opens).
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import itertools
import json
import os
import re
import signal
import socket
import struct
import sys
import types
import weakref
from collections.abc import Mapping
from typing import Any

from bgpd.exabgp import collision, fanout, poller, reload, rfc7606, teardown

STEPS_PER_PASS = 1000
# change 10: the keepalive file's path (set by bgpd's supervisor), and the signal to read it again
KEEPALIVE_ENV = "BGPD_EXABGP_KEEPALIVE"
KEEPALIVE_SIGNAL = signal.SIGWINCH


def _remove_self(self: Any, changes: Any) -> Any:
    if not changes.nlri.nexthop.SELF:
        return changes  # nothing to rewrite: no private copy needed
    return _original_remove_self(self, changes)


def _async_run(self: Any) -> bool:
    if not self._async:
        return False
    if any(self._is_coroutine(callback) for _, callback in self._async):
        return bool(_original_async_run(self))
    uid, callback = self._async.popleft()
    for _ in range(STEPS_PER_PASS):
        try:
            next(callback)
        except StopIteration:
            if not self._async:
                return False
            uid, callback = self._async.popleft()
        except Exception as exc:  # as ASYNC._run_async: report, tell the service, go on
            from exabgp.logger import log

            log.error(lambda uid=uid: f"async | {uid} | problem with function", "reactor")
            for line in str(exc).split("\n"):
                log.error(lambda line=line, uid=uid: f"async | {uid} | {line}", "reactor")
            self._notify_error(uid)
            if not self._async:
                return False
            uid, callback = self._async.popleft()
    self._async.appendleft((uid, callback))
    return True


def _wait_for_io(self: Any, sleeptime: int) -> Any:
    if not self.asynchronous.ready():
        sleeptime = 0  # queued API work: look at the sockets, do not sleep
    return _original_wait_for_io(self, sleeptime)


# Characters that need the original tokenizer's handling: quotes, escapes, comments.
_NEEDS_ORIGINAL_TOKENS = re.compile(r"[\"'\\#]")
# A word (anything but the tokenizer's spaces and punctuation) or one punctuation character.
_TOKEN = re.compile(r"[^ \t\r\n;{}\[\],]+|[;{}\[\],]")
_END_OF_STATEMENT = frozenset(";{}")
_PUNCTUATION = frozenset(";{}[],")


def _tokens(stream: Any) -> Any:
    """`configuration.core.format.tokens` with a regular-expression fast path for plain lines."""
    nb_lines = 0
    stream = iter(stream)
    for letters in stream:
        nb_lines += 1
        if _NEEDS_ORIGINAL_TOKENS.search(letters):
            # the original takes over from here; empty lines first so that it counts lines as it would have
            rest = itertools.chain(itertools.repeat("", nb_lines - 1), [letters], stream)
            yield from _original_tokens(rest)
            return
        parsed: list[tuple[int, int, str]] = []
        match = None
        for match in _TOKEN.finditer(letters):
            word = match.group()
            parsed.append((nb_lines, match.start(), word))
            if word in _END_OF_STATEMENT:
                yield parsed
                parsed = []
        if not parsed:
            continue
        # a statement left open at the end of the line: the original's two errors, in its order
        assert match is not None
        if match.end() == len(letters) and match.group() not in _PUNCTUATION:
            raise ValueError(f'invalid syntax line {nb_lines}: "{match.group()}"')
        raise ValueError(f'invalid syntax line {nb_lines}: "{parsed}"')


def _split_nlris(self: Any, negotiated: Any) -> Any:
    """Plain IPv4 unicast UPDATEs: the original's result (every NLRI in the IPv4 NLRI / withdrawn fields, in
    index order, nothing multiprotocol) with one sort key per NLRI. Plain IPv6 unicast UPDATEs (change 9):
    likewise the original's (nothing in the IPv4 fields, the NLRIs in index order in the multiprotocol part,
    by action in order of first appearance). Anything else: the original."""
    nlris = self.nlris
    if len(nlris) < 2:
        return _original_split_nlris(self, negotiated)
    afi, unicast, inet = nlris[0].afi, _exa.unicast, _exa.inet
    announce, withdraw = _exa.announce, _exa.withdraw
    native = afi == _exa.ipv4
    if not (native or afi == _exa.ipv6) or (afi, unicast) not in negotiated.families:
        return _original_split_nlris(self, negotiated)
    undefined = _exa.undefined
    for nlri in nlris:
        if type(nlri) is not inet or nlri.afi != afi or nlri.safi != unicast:
            return _original_split_nlris(self, negotiated)
        action = nlri.action
        if action == withdraw:
            continue
        if action != announce or (nlri.nexthop.afi != afi if native else nlri.nexthop.afi == undefined):
            return _original_split_nlris(self, negotiated)  # RFC 8950 next hop, or the original's error
    # INET.index() is family + path id (or b"no-pi") + packed prefix; the family is the same for all
    nopath = _exa.nopath
    ordered = sorted(
        nlris,
        key=lambda n: (b"no-pi" if n.path_info is nopath else n.path_info.pack()) + n.cidr.pack_nlri(),
    )
    if native:
        return ordered, {}
    by_action: dict[Any, list[Any]] = {}
    for nlri in ordered:
        by_action.setdefault(nlri.action, []).append(nlri)
    return [], {(_exa.ipv6, unicast): by_action}


def _updates(self: Any, grouped: Any) -> Any:
    """`OutgoingRIB.updates`, with each run of single-route IPv6 unicast Updates that carry the very same
    attributes object (the original yields one such Update per change of one attribute-set bucket) given as
    one Update of its withdrawals, then one of its announcements, as the original groups IPv4 unicast."""
    updates = _original_updates(self, grouped)
    if not grouped or self._refresh_families or self._refresh_changes:
        yield from updates  # a route refresh is in this call: the original's Updates, as they are
        return
    update_type, ipv6, unicast = _exa.update, _exa.ipv6, _exa.unicast
    run: list[Any] = []
    for update in updates:
        nlris: Any = update.nlris if type(update) is update_type else ()
        if len(nlris) == 1 and nlris[0].afi == ipv6 and nlris[0].safi == unicast:
            if run and update.attributes is not run[0].attributes:
                yield from _coalesced(run)
                run = []
            run.append(update)
            continue
        if run:
            yield from _coalesced(run)
            run = []
        yield update
    if run:
        yield from _coalesced(run)


def _coalesced(run: list[Any]) -> list[Any]:
    """One run of `_updates`: [withdrawals Update, announcements Update] (either left out if empty)."""
    if len(run) == 1:
        return run
    withdraw, announce = _exa.withdraw, _exa.announce
    withdrawn = [u.nlris[0] for u in run if u.nlris[0].action == withdraw]
    announced = [u.nlris[0] for u in run if u.nlris[0].action == announce]
    if len(withdrawn) + len(announced) != len(run):
        return run  # an action the original's Updates would not carry here: leave them alone
    attributes = run[0].attributes
    return [_exa.update(nlris, attributes) for nlris in (withdrawn, announced) if nlris]


@functools.lru_cache(maxsize=65536)
def _match_neighbor_cached(description: tuple[str, ...], name: str) -> bool:
    return bool(_original_match_neighbor(list(description), name))


def _match_neighbor(description: Any, name: str) -> bool:
    return _match_neighbor_cached(tuple(description), name)


def _inject_change(self: Any, peers: Any, change: Any) -> Any:
    return _original_inject_change(self, frozenset(peers), change)  # only used for `name in peers`


def _cached_create(original: Any) -> Any:
    def create(cls: Any, value: Any) -> Any:
        hit = cls.cache.get(value)
        return hit if hit is not None else original(value)

    return classmethod(create)


def keepalive_interval(wanted: int | None, negotiated: int, offered: int) -> int | None:
    """Change 10, BIRD's rule: the interval of a session whose configured keepalive time is `wanted`, which
    offered hold time `offered` and negotiated `negotiated`: `wanted` scaled by negotiated / offered, in
    whole seconds, at least 1. None: nothing configured, or no keepalives at all (hold time 0): ExaBGP's
    own interval stays."""
    if wanted is None or negotiated <= 0 or offered <= 0:
        return None
    return max(1, wanted * negotiated // offered)


def _peer_key(address: Any) -> str:
    """A peer address as bgpd writes it (`ipaddress`'s text; ExaBGP keeps the config's spelling)."""
    try:
        return str(ipaddress.ip_address(str(address)))
    except ValueError:  # not an address (a neighbor without one): matches no entry of the file
        return str(address)


def read_keepalives(path: str | None = None) -> dict[str, int]:
    """The keepalive file (default: the one named by `KEEPALIVE_ENV`): peer address -> seconds. No path, no
    file or an unreadable one: nothing configured (ExaBGP's own intervals)."""
    path = os.environ.get(KEEPALIVE_ENV) if path is None else path
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return {
            _peer_key(peer): seconds
            for peer, seconds in data.items()
            if type(seconds) is int and 1 <= seconds <= 0xFFFF
        }
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        from exabgp.logger import log

        log.error(lambda e=exc: f"keepalive file {path}: {e}; ExaBGP's intervals apply", "configuration")
        return {}


def _ka_init(self: Any, session: Any, proto: Any) -> None:
    """`KA.__init__`, then the session's configured keepalive interval, if any (change 10)."""
    _original_ka_init(self, session, proto)
    timer, negotiated = self.send_timer, proto.negotiated
    offered = negotiated.sent_open.hold_time if negotiated.sent_open is not None else 0
    _timers[timer] = (_peer_key(proto.neighbor["peer-address"]), negotiated.holdtime, int(offered))
    while True:  # a refresh between the registration and the read: read again
        seen = _refreshes
        _set_keepalive(timer, read_keepalives(), session)
        if seen == _refreshes:
            return


def _set_keepalive(timer: Any, keepalives: dict[str, int], session: Any = None) -> None:
    peer, holdtime, offered = _timers[timer]
    interval = keepalive_interval(keepalives.get(peer), int(holdtime), offered)
    timer.keepalive = holdtime.keepalive() if interval is None else interval
    if interval is not None and session is not None:
        from exabgp.logger import log

        log.info(
            lambda: (
                f"keepalive every {interval}s (keepalive time {keepalives[peer]}s, hold time "
                f"{int(holdtime)}s of {offered}s)"
            ),
            "ka-" + session(),
        )


def _refresh_keepalives(signum: int = 0, frame: Any = None) -> None:
    """KEEPALIVE_SIGNAL: read the keepalive file again and give every live session its interval now."""
    global _refreshes
    _refreshes += 1
    keepalives = read_keepalives()
    for timer in list(_timers.keys()):
        _set_keepalive(timer, keepalives)


_original_remove_self: Any = None
_original_async_run: Any = None
_original_wait_for_io: Any = None
_original_tokens: Any = None
_original_split_nlris: Any = None
_original_updates: Any = None
# ExaBGP's constants the replacements compare with, filled by apply() (ExaBGP is imported only there)
_exa = types.SimpleNamespace()
_original_creates: dict[str, Any] = {}
_original_match_neighbor: Any = None
_original_inject_change: Any = None
_original_ka_init: Any = None
# change 10: each session's SendTimer -> (peer address, negotiated HoldTime, hold time we offered); entries
# go with their timers
_timers: weakref.WeakKeyDictionary[Any, tuple[str, Any, int]] = weakref.WeakKeyDictionary()
_refreshes = 0  # KEEPALIVE_SIGNALs handled
_original_reload: Any = None
_original_restart: Any = None
_original_set_accepted_ttl: Any = None
# change 11: the main listening sockets given a GTSM filter -> the peer minimums it enforces
_guarded: weakref.WeakKeyDictionary[socket.socket, dict[int, int]] = weakref.WeakKeyDictionary()


def apply() -> None:
    """Install the seventeen changes (idempotent). The signal handler of change 10 is `main`'s to install."""
    global _original_remove_self, _original_async_run, _original_wait_for_io
    global _original_tokens, _original_split_nlris, _original_match_neighbor
    global _original_inject_change, _original_updates, _original_ka_init
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update import Update
    from exabgp.bgp.message.update.attribute import MPRNLRI, Attributes
    from exabgp.bgp.message.update.nlri.inet import INET
    from exabgp.bgp.message.update.nlri.qualifier.path import PathInfo
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.configuration.configuration import _Configuration
    from exabgp.configuration.core import tokeniser
    from exabgp.protocol.family import AFI, SAFI
    from exabgp.reactor.api.command import limit
    from exabgp.reactor.asynchronous import ASYNC
    from exabgp.reactor.keepalive import KA
    from exabgp.reactor.loop import Reactor
    from exabgp.rib.outgoing import OutgoingRIB

    if _original_remove_self is not None:
        return
    assert inspect.getsource(Neighbor.remove_self).count("deepcopy") == 1, "unexpected ExaBGP version"
    _original_remove_self = Neighbor.remove_self
    _original_async_run = ASYNC.run
    _original_wait_for_io = Reactor._wait_for_io
    Neighbor.remove_self = _remove_self
    ASYNC.run = _async_run
    Reactor._wait_for_io = _wait_for_io
    assert "sorted(self.nlris)" in inspect.getsource(Update._split_nlris), "unexpected ExaBGP version"
    assert "cache.get(value," in inspect.getsource(AFI.create), "unexpected ExaBGP version"
    _original_tokens = tokeniser.tokens
    _original_split_nlris = Update._split_nlris
    _exa.ipv4, _exa.unicast, _exa.inet, _exa.nopath = AFI.ipv4, SAFI.unicast, INET, PathInfo.NOPATH
    _exa.announce, _exa.withdraw = Action.ANNOUNCE, Action.WITHDRAW
    assert inspect.getsource(INET.index).count("Family.index(self) + addpath + self.cidr.pack_nlri()") == 1
    assert "no-pi" in inspect.getsource(INET.index), "unexpected ExaBGP version"
    tokeniser.tokens = _tokens
    Update._split_nlris = _split_nlris
    _original_creates.update(afi=AFI.create, safi=SAFI.create)
    assert "match_neighbor(description, peer_name)" in inspect.getsource(limit.match_neighbors)
    _original_match_neighbor = limit.match_neighbor
    limit.match_neighbor = _match_neighbor
    body = inspect.getsource(_Configuration.inject_change)
    assert body.count("peers") == 2 and "if neighbor_name in peers:" in body, "unexpected ExaBGP version"
    _original_inject_change = _Configuration.inject_change
    _Configuration.inject_change = _inject_change
    _check_ipv6_grouping(OutgoingRIB, Update, MPRNLRI, Attributes)
    _original_updates = OutgoingRIB.updates
    _exa.ipv6, _exa.undefined, _exa.update = AFI.ipv6, AFI.undefined, Update
    OutgoingRIB.updates = _updates
    AFI.create = _cached_create(AFI.create)
    SAFI.create = _cached_create(SAFI.create)
    _check_keepalive(KA)
    _original_ka_init = KA.__init__
    KA.__init__ = _ka_init
    _apply_gtsm(Reactor)
    teardown.apply()
    reload.apply()
    fanout.apply(_original_inject_change)
    poller.apply()
    collision.apply()


def _check_ipv6_grouping(rib: Any, update: Any, mprnlri: Any, attributes: Any) -> None:
    """What change 9 relies on in ExaBGP 5.0.15's source (AssertionError for another version)."""
    src = inspect.getsource(rib.updates)
    # the only Updates but the per-bucket ones come from a route refresh (which _updates leaves alone)
    assert "refresh_families = self._refresh_families" in src, "unexpected ExaBGP version"
    assert "for change in self._refresh_changes}" in src, "unexpected ExaBGP version"
    assert src.count("yield RouteRefresh(") == 2, "unexpected ExaBGP version"
    assert src.count("yield Update(") == 5, "unexpected ExaBGP version"
    # IPv4 unicast grouped per attribute set; IPv6 unicast one Update per change, a bucket's in a row
    assert "if family == (AFI.ipv4, SAFI.unicast) and grouped:" in src, "unexpected ExaBGP version"
    assert "(AFI.ipv6, SAFI.unicast)" not in src, "unexpected ExaBGP version"
    assert "attributes = new_attr[attr_index]" in src, "unexpected ExaBGP version"
    assert src.count("yield Update([change.nlri], attributes)") == 1, "unexpected ExaBGP version"
    # one attributes object, one index (so one bucket): the index is computed once per object
    assert "if not self._idx:" in inspect.getsource(attributes.index), "unexpected ExaBGP version"
    # UPDATE packing: IPv6 routes go to MP_UNREACH / MP_REACH by action; withdrawals first, without
    # attributes when there is no announcement; MP_REACH split by next hop and message size
    split = inspect.getsource(_original_split_nlris)  # Update._split_nlris is change 5's by now
    assert "mp_nlris.setdefault(nlri.family().afi_safi(), {}).setdefault(nlri.action, []).append(" in split
    assert "if set(actions.keys()) != {Action.WITHDRAW}:" in inspect.getsource(update._carries_attributes)
    mp = inspect.getsource(update._mp_messages)
    unreach, reach = mp.find("MPURNLRI(afi, safi, withdraws)"), mp.find("MPRNLRI(afi, safi, announces)")
    assert 0 <= unreach < reach, "unexpected ExaBGP version"
    packed = inspect.getsource(mprnlri.packed_attributes)
    assert "mpnlri.setdefault(nexthop, [])" in packed and "if self._len(payload + nlri) > maximum:" in packed


def _check_keepalive(ka: Any) -> None:
    """What change 10 relies on in ExaBGP 5.0.15's source (AssertionError for another version)."""
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.bgp.timer import SendTimer
    from exabgp.reactor import interrupt
    from exabgp.reactor.peer import Peer

    # one KA per established session, whose SendTimer takes its interval from the negotiated hold time ...
    main = teardown.original_main(Peer)
    assert inspect.getsource(main).count("KA(self.proto.connection.session, self.proto)") == 1
    assert "self.send_timer = SendTimer(session, proto.negotiated.holdtime)" in inspect.getsource(ka.__init__)
    assert "self.keepalive = holdtime.keepalive()" in inspect.getsource(SendTimer.__init__)
    # ... and reads it on every call: a changed interval applies from the next call on
    need_ka = inspect.getsource(SendTimer.need_ka)
    assert "if not self.keepalive:" in need_ka and "left = self.last_sent + self.keepalive - now" in need_ka
    negotiate = inspect.getsource(Negotiated._negotiate)
    assert "HoldTime(min(self.sent_open.hold_time, self.received_open.hold_time))" in negotiate
    # the signal that makes it read the keepalive file again is none of ExaBGP's
    assert KEEPALIVE_SIGNAL.name not in inspect.getsource(interrupt), "unexpected ExaBGP version"


# ---------------------------------------------------------------- 11. TTL security on the listening side

GTSM_TTL = 255  # RFC 5082 §3: what a GTSM speaker sends with
SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27  # <asm-generic/socket.h>
BPF_MAXINSNS = 4096  # <linux/bpf_common.h>: the longest classic program the kernel takes
# classic BPF (<linux/filter.h>) instructions: (code, jump if true, jump if false, k)
_BPF_LDW_ABS, _BPF_LDB_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x30, 0x15, 0x35, 0x06
_SKF_NET_OFF = 0xFFF00000  # SKF_NET_OFF (-0x100000) as a load's unsigned k: offsets from the IP header
_KEEP, _DROP = 0xFFFFFFFF, 0
# by IP version: (offset of the TTL / hop limit, offset of the source address, its 32-bit words)
_IP_HEADER = {4: (8, 12, 1), 6: (7, 8, 4)}
_TTL_OPTION = {4: (socket.IPPROTO_IP, socket.IP_TTL), 6: (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS)}


def gtsm_program(version: int, minimums: Mapping[int, int]) -> list[tuple[int, int, int, int]]:
    """Change 11: the classic BPF socket filter of a listening socket of IP `version` (4 or 6), as
    `struct sock_filter` tuples (code, jt, jf, k). `minimums`: peer address (as an integer) -> the lowest TTL
    (hop limit) accepted from it, 1..255 (RFC 5082 §3: 256 - hops). A TCP segment from one of these addresses
    whose TTL is below its minimum is dropped; every other segment is kept whole. ValueError when the
    program would be longer than the kernel takes (BPF_MAXINSNS: 682 IPv4 or 341 IPv6 peers); the kernel
    may refuse a shorter one with ENOMEM past `net.core.optmem_max` (131072 here: 333 IPv6 peers fit)."""
    ttl_at, source_at, words = _IP_HEADER[version]
    program: list[tuple[int, int, int, int]] = []
    for address, minimum in minimums.items():
        if not 1 <= minimum <= GTSM_TTL:
            raise ValueError(f"minimum TTL {minimum} of peer {address}: expected 1..{GTSM_TTL}")
        block: list[tuple[int, int, int | None, int]] = []
        for i in range(words):  # the source address, 32 bits at a time: a differing word skips the block
            word = address >> (32 * (words - 1 - i)) & 0xFFFFFFFF
            block += [(_BPF_LDW_ABS, 0, 0, _SKF_NET_OFF + source_at + 4 * i), (_BPF_JEQ_K, 0, None, word)]
        block += [
            (_BPF_LDB_ABS, 0, 0, _SKF_NET_OFF + ttl_at),  # A = TTL (hop limit)
            (_BPF_JGE_K, 0, 1, minimum),
            (_BPF_RET_K, 0, 0, _KEEP),
            (_BPF_RET_K, 0, 0, _DROP),
        ]
        program += [(c, t, len(block) - n - 1 if f is None else f, k) for n, (c, t, f, k) in enumerate(block)]
    program.append((_BPF_RET_K, 0, 0, _KEEP))
    if len(program) > BPF_MAXINSNS:
        raise ValueError(f"{len(minimums)} peers with TTL security: more than one BPF filter can check")
    return program


def _attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER (replaces the socket's filter at once; accepted sockets inherit it)."""
    import ctypes

    code = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    sock.setsockopt(
        socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("@HP", len(program), ctypes.addressof(buffer))
    )


def gtsm_minimums(neighbors: Any, version: int, address: str) -> dict[int, int]:
    """The minimums (as `gtsm_program` takes them) of the ExaBGP neighbors, of IP `version`, that a
    listening socket bound to `address` serves (their local address, or any on a wildcard socket) and that
    have `incoming-ttl`. A range neighbor is left out (its accepted sockets get IP_MINTTL only)."""
    wildcard = address in ("0.0.0.0", "::")
    table: dict[int, int] = {}
    for neighbor in neighbors:
        minimum, peer, local = neighbor["incoming-ttl"], neighbor["peer-address"], neighbor["local-address"]
        if not minimum or peer is None or neighbor.range_size > 1 or (6 if peer.ipv6() else 4) != version:
            continue
        if not wildcard and local is not None and local.top() != address:
            continue
        key = peer.address()
        table[key] = min(table.get(key, minimum), minimum)
    return table


def protect_listeners(reactor: Any) -> None:
    """Change 11, after ExaBGP (re)loaded its configuration: give each main listening socket the GTSM filter
    and sending TTL of the neighbors it serves, take them away again from one that serves none any more, and
    leave every other socket untouched (no system call at all). A filter that cannot be set is logged; the
    neighbors' accepted sockets still get IP_MINTTL."""
    listener = reactor.listener
    if listener is None:
        return
    main = {(ip.top(), reactor._port) for ip in reactor._ips}
    neighbors = list(reactor.configuration.neighbors.values())
    for sock, (address, port, _, _) in list(listener._sockets.items()):
        if (address, port) not in main:
            continue
        version = 6 if sock.family == socket.AF_INET6 else 4
        minimums = gtsm_minimums(neighbors, version, address)
        if _guarded.get(sock, {}) == minimums:
            continue  # as it is: nothing to do
        level, option = _TTL_OPTION[version]
        try:
            if minimums:
                _attach_filter(sock, gtsm_program(version, minimums))
                sock.setsockopt(level, option, GTSM_TTL)
                _guarded[sock] = minimums
            else:
                sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
                sock.setsockopt(level, option, -1)  # the kernel's default again
                del _guarded[sock]
        except (OSError, ValueError) as exc:
            from exabgp.logger import log

            log.error(
                lambda e=exc, a=address: f"ttl-security on the listening socket {a}: {e}; not enforced there",
                "network",
            )


def _reload(self: Any) -> Any:
    """`Reactor.reload`, then change 11 on the listening sockets."""
    reloaded = _original_reload(self)
    if reloaded:
        protect_listeners(self)
    return reloaded


def _restart(self: Any) -> Any:
    """`Reactor.restart` (which reads the configuration again too), then change 11."""
    result = _original_restart(self)
    protect_listeners(self)
    return result


def _set_accepted_ttl(connection: Any, neighbor: Any) -> None:
    """`listener.set_accepted_ttl` (TTL 255 for a neighbor with `incoming-ttl`), then, before ExaBGP reads
    from the connection, IP_MINTTL for such a neighbor, or the kernel's default TTL for any other once a
    listening socket sends with 255 (change 11)."""
    from exabgp.reactor.network.error import NetworkError
    from exabgp.reactor.network.tcp import sending_ttl, set_minimum_ttl

    _original_set_accepted_ttl(connection, neighbor)
    io, minimum = connection.io, neighbor["incoming-ttl"]
    if io is None:
        return
    try:
        if minimum:
            set_minimum_ttl(io, connection.afi, neighbor["peer-address"].top(), minimum)
        elif _guarded and sending_ttl(neighbor["outgoing-ttl"], None) is None:
            level, option = _TTL_OPTION[6 if io.family == socket.AF_INET6 else 4]
            io.setsockopt(level, option, -1)
    except (NetworkError, OSError) as exc:
        from exabgp.logger import log

        log.error(lambda e=exc: f"ttl-security for {connection.name()}: {e}", "network")


def _apply_gtsm(reactor: Any) -> None:
    """Install change 11 (called by `apply`)."""
    global _original_reload, _original_restart, _original_set_accepted_ttl
    from exabgp.reactor import listener

    _check_gtsm(reactor, listener)
    _original_reload, _original_restart = reactor.reload, reactor.restart
    _original_set_accepted_ttl = listener.set_accepted_ttl
    reactor.reload, reactor.restart = _reload, _restart
    listener.set_accepted_ttl = _set_accepted_ttl


def _check_gtsm(reactor: Any, listener: Any) -> None:
    """What change 11 relies on in ExaBGP 5.0.15's source (AssertionError for another version)."""
    from exabgp.reactor.network.outgoing import Outgoing

    # the main listening sockets: bound before the first reload, without a minimum TTL, and never given one
    run = inspect.getsource(reactor.run)
    assert "self.listener.listen_on(ip, None, self._port, None, False, None)" in run, "unexpected ExaBGP"
    assert run.find("listen_on(ip, None") < run.find("if not self.reload():"), "unexpected ExaBGP version"
    reload = inspect.getsource(reactor.reload)
    assert "self.listener.listen_on(" in reload and "incoming-ttl" not in reload, "unexpected ExaBGP version"
    assert "self.configuration.reload()" in inspect.getsource(reactor.restart), "unexpected ExaBGP version"
    # ... kept by Listener as {socket: (address, port, peer, md5)}; a connection is accepted on one of them
    assert "self._sockets[sock] = (local_ip.top(), local_port, peer_ip.top(), use_md5)" in inspect.getsource(
        listener.Listener._listen
    )
    assert "io, _ = sock.accept()" in inspect.getsource(listener.Listener.incoming), "unexpected ExaBGP"
    # every accepted connection of a known neighbor goes through set_accepted_ttl before ExaBGP reads it
    assert inspect.getsource(listener.Listener.new_connections).count("set_accepted_ttl(connection, ") == 2
    accepted = inspect.getsource(listener.set_accepted_ttl)
    assert "sending_ttl(neighbor['outgoing-ttl'], neighbor['incoming-ttl'])" in accepted, "unexpected ExaBGP"
    assert "set_minimum_ttl" not in accepted, "unexpected ExaBGP version"
    # the connections ExaBGP opens already carry both halves (nothing to change there)
    setup = inspect.getsource(Outgoing._setup)
    assert "set_minimum_ttl(self.io, self.afi, self.peer, self.incoming_ttl)" in setup, "unexpected ExaBGP"


def main() -> None:
    # RFC 7606 corrections to ExaBGP's UPDATE parser (bgpd.exabgp.rfc7606): always, also unpatched, since
    # they are correctness fixes, not changes of speed
    rfc7606.apply()
    if os.environ.get("BGPD_EXABGP_UNPATCHED") != "1":
        apply()
        signal.signal(KEEPALIVE_SIGNAL, _refresh_keepalives)
    from exabgp.application.main import main as exabgp_main

    sys.argv[0] = "exabgp"
    exabgp_main()


if __name__ == "__main__":
    main()
