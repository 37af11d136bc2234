"""Starts ExaBGP (`python -m bgpd.exabgp.launch server CONF`) with three narrowly scoped changes to how its
reactor drives API commands. Profiles of ExaBGP 5.0.15 announcing 10k routes showed:

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

Nothing else changes: the same code paths run in the same order; the tests in tests/kernel and
tests/e2e run through this launcher, and tests/unit/test_exabgp_launch.py checks each change against the
unpatched behaviour. `BGPD_EXABGP_UNPATCHED=1` starts ExaBGP unchanged (for comparison).
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any

STEPS_PER_PASS = 1000


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


_original_remove_self: Any = None
_original_async_run: Any = None
_original_wait_for_io: Any = None


def apply() -> None:
    """Install the three changes (idempotent)."""
    global _original_remove_self, _original_async_run, _original_wait_for_io
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.reactor.asynchronous import ASYNC
    from exabgp.reactor.loop import Reactor

    if _original_remove_self is not None:
        return
    assert inspect.getsource(Neighbor.remove_self).count("deepcopy") == 1, "unexpected ExaBGP version"
    _original_remove_self = Neighbor.remove_self
    _original_async_run = ASYNC.run
    _original_wait_for_io = Reactor._wait_for_io
    Neighbor.remove_self = _remove_self
    ASYNC.run = _async_run
    Reactor._wait_for_io = _wait_for_io


def main() -> None:
    if os.environ.get("BGPD_EXABGP_UNPATCHED") != "1":
        apply()
    from exabgp.application.main import main as exabgp_main

    sys.argv[0] = "exabgp"
    exabgp_main()


if __name__ == "__main__":
    main()
