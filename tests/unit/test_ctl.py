"""`bgpctl`'s pieces without a daemon: the peers table built from columns, the prefix checked before
asking, one-line usage errors and the top-level handler (`bgpd.oneline`), and the control socket's answer
when a command fails by a bug (one line for the client, the traceback in the log)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bgpd import ctl
from bgpd.control import ControlServer
from bgpd.oneline import EXIT_BUG, EXIT_FAILED, guard

PEER: dict[str, Any] = {
    "address": "192.168.100.3",
    "asn": 64512,
    "type": "mesh",
    "state": "up",
    "since": 0.0,
    "received": 3,
    "accepted": 2,
    "rejected": {"as_loop": 1},
    "advertised": 4,
    "afi": "ipv4",
}


def test_the_peers_table_is_its_columns() -> None:
    header, row, reasons = ctl.render_peers([PEER]).splitlines()
    assert header.split() == [
        "Peer",
        "AS",
        "Type",
        "State",
        "Since",
        "Recv",
        "Acc",
        "Rej",
        "Max",
        "Adv",
        "AFI",
    ]
    assert re.match(
        r"^192\.168\.100\.3\s+64512\s+mesh\s+Established\s+\S+ \S+\s+3\s+2\s+1\s+-\s+4\s+ipv4$", row
    )
    assert reasons.split() == ["rejected:", "as_loop", "1"]
    assert header.index("Recv") + len("Recv") == row.index(" 3 ") + 2  # numbers right-aligned under it
    # a column more is one more Column
    extra = (*ctl.PEER_COLUMNS, ctl.Column("Hits", lambda p: p.get("max_prefixes_hits", 0), 6, right=True))
    header, row, _ = ctl.render_peers([PEER], extra).splitlines()
    assert header.endswith("AFI   Hits") and row.endswith("ipv4      0")


def test_a_held_down_peer_shows_its_limit_and_reason() -> None:
    held = {**PEER, "state": "held-down", "rejected": {}, "max_prefixes": 100}
    held["reason"] = "held down until 12:00:00: maximum number of prefixes (100) exceeded"
    _, row, reason = ctl.render_peers([held]).splitlines()
    assert "Held down" in row and row.split()[-3] == "100"
    assert reason.split(":", 1)[0].strip() == "reason" and "maximum number of prefixes" in reason


@pytest.mark.parametrize(
    ("prefix", "family", "error"),
    [
        ("10.20.1", None, "'10.20.1' is not a prefix"),
        ("10.20.1.1/24", None, "'10.20.1.1/24' is not a prefix"),
        ("fd00::/300", None, "'fd00::/300' is not a prefix"),
        ("10.20.1.0/24", 6, "10.20.1.0/24 is an IPv4 prefix, not IPv6"),
        ("fd00:10:20::/48", 4, "fd00:10:20::/48 is an IPv6 prefix, not IPv4"),
    ],
)
def test_a_bad_prefix_is_named_before_asking(prefix: str, family: int | None, error: str) -> None:
    with pytest.raises(ctl.CtlError) as info:
        ctl.check_prefix(prefix, family)
    assert str(info.value).startswith(error)


def test_good_prefixes_pass() -> None:
    for prefix in ("10.20.1.0/24", "10.20.1.2", "fd00:10:20::/48", "fd00::1"):
        ctl.check_prefix(prefix, None)


def test_usage_errors_are_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bgpd.ctl", "show", "routes", "-4", "-6"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "bgpctl show: argument -6: not allowed with argument -4; see bgpctl show --help\n"
    )


def test_the_handler_turns_expected_errors_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def missing() -> int:
        open("/nonexistent/x")  # noqa: SIM115 - raises
        return 0

    def refused() -> int:
        raise ctl.CtlError("bgpd is not running\n(no socket)")

    assert guard("bgpctl", missing) == EXIT_FAILED
    assert capsys.readouterr().err == "bgpctl: /nonexistent/x: No such file or directory\n"
    assert guard("bgpctl", refused, expected=(ctl.CtlError,)) == EXIT_FAILED
    assert capsys.readouterr().err == "bgpctl: bgpd is not running (no socket)\n"


def test_a_bug_is_one_line_and_its_traceback_is_kept(capsys: pytest.CaptureFixture[str]) -> None:
    def buggy() -> int:
        return {"a": 1}["b"]

    assert guard("bgpd lab", buggy) == EXIT_BUG
    (line,) = capsys.readouterr().err.splitlines()
    match = re.fullmatch(
        r"bgpd lab: internal error \(a bug in bgpd\): KeyError: 'b'; traceback in (\S+)", line
    )
    assert match, line
    saved = Path(match.group(1))
    try:
        assert "Traceback" in saved.read_text() and "in buggy" in saved.read_text()
    finally:
        saved.unlink()


def test_a_control_command_failing_by_a_bug_answers_one_line_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A daemon that cannot give its status (a bug: here the object has nothing views can read)."""
    server = ControlServer(object(), "/nonexistent/bgpd.ctl", reload=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="bgpd.control"):
        reply = asyncio.run(server.dispatch(json.dumps({"command": "status"}).encode()))
    assert reply == {
        "ok": False,
        "error": "internal error in bgpd answering 'status' (AttributeError); see its log",
    }
    (record,) = caplog.records
    assert record.exc_info is not None and getattr(record, "kv", {}) == {"command": "status"}


def test_a_bgpd_that_holds_its_runtime_dir_but_has_no_socket_yet_is_starting(tmp_path: Path) -> None:
    """A bgpd waiting for its datastore holds the runtime directory (bgpd.pid locked) before its control
    socket exists: bgpctl says it is starting, not that it is not running."""
    from bgpd.ctl import CtlError, request
    from bgpd.runlock import lock_runtime_dir

    socket_path = str(tmp_path / "bgpd.ctl")
    with pytest.raises(CtlError, match="bgpd is not running"):
        request(socket_path, "status")
    fd = lock_runtime_dir(str(tmp_path))
    try:
        with pytest.raises(
            CtlError, match=rf"bgpd \(pid {os.getpid()}\) is starting and does not answer yet"
        ):
            request(socket_path, "status")
    finally:
        os.close(fd)
    with pytest.raises(CtlError, match="bgpd is not running"):
        request(socket_path, "status")
