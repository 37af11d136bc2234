"""The route decision engine: bgpd's brain, with no I/O.

Inputs are events, fed by the I/O shell (`bgpd.speaker`): a session's OPEN, state, UPDATE, End-of-RIB
and NOTIFICATION (already decoded from ExaBGP's text by `bgpd.exabgp`), kernel route events and the
results of kernel writes and re-reads (from `bgpd.kernel`), a timer firing, a new configuration.
Outputs are exactly two lists, taken by the shell when it is ready to carry them out (so bursts
coalesce), as OpenBGPD's RDE hands its results to its parent and session engines:

* `Engine.take_kernel_ops()`: FIB operations, `(prefix, next hops)` to install or `(prefix, None)` to
  delete, only ever for bgpd's own routes;
* `Engine.take_adj_rib_out()`: Adj-RIB-Out changes (`Announce`, `Withdraw`, `EndOfRib`, `RouteRefresh`),
  per family and per set of receiving sessions.

Beside them, `Engine.take_session_ops()` gives the rare session operations (`Teardown`: a NOTIFICATION
Cease; `HoldDown`: the sessions to keep out of the speaker) of the maximum-prefixes limit (`limits`).

The engine asks for timers through the `Timers` it is given and is told when they fire. It is family-
agnostic: IPv4 and IPv6 prefixes share every table (see `bgpd.prefix` for the family-tagged keys).

Modules: `core` (the Engine: sessions, RIB, policy, export, reflection, deferral), `fib` (what the kernel
holds of ours against what is wanted: the reconcile and repair state machine), `restart` (the graceful
restart helper's stale paths), `peers` (per-session state), `limits` (maximum prefixes per peer and its
hold-down, RFC 4486), `establish` (why a session cannot be established), `notification` (NOTIFICATION
names), `outputs` (the output types), `timers`.
"""

from bgpd.engine.core import Engine
from bgpd.engine.outputs import (
    Announce,
    EndOfRib,
    HoldDown,
    KernelOp,
    OutChange,
    RouteRefresh,
    SessionOp,
    Teardown,
    Withdraw,
)
from bgpd.engine.peers import PeerStatus
from bgpd.engine.timers import Timers

__all__ = [
    "Announce",
    "EndOfRib",
    "Engine",
    "HoldDown",
    "KernelOp",
    "OutChange",
    "PeerStatus",
    "RouteRefresh",
    "SessionOp",
    "Teardown",
    "Timers",
    "Withdraw",
]
