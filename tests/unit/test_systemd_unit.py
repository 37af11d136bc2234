"""configs/bgpd.service (issue 16) passes `systemd-analyze verify`, and says what operators rely on: run in
the foreground, reload by SIGHUP, restart on failure, the two capabilities bgpd needs and no more.

`verify` also checks that ExecStart's program exists: the unit names /usr/local/bin/bgpd (where
`pip install .` puts it), so the test verifies a copy whose ExecStart names this checkout's bgpd, the one
difference; a broken copy must fail verify, so the check is known to bite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "configs" / "bgpd.service"
INSTALLED = "/usr/local/bin/bgpd"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")


def verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    here = Path(sys.executable).parent / "bgpd"
    unit = tmp_path / "bgpd.service"
    unit.write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={here} "))
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def settings() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_the_unit_verifies(tmp_path: Path) -> None:
    result = verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_broken_unit_does_not(tmp_path: Path) -> None:
    result = verify(UNIT.read_text().replace("Type=simple", "Type=sometimes"), tmp_path)
    assert "sometimes" in result.stderr, result.stderr


def test_what_operators_rely_on() -> None:
    s = settings()
    assert s["ExecStart"] == f"{INSTALLED} run -c /etc/bgpd/host.yaml"
    assert s["Type"] in ("simple", "notify")
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"  # bgpd's reload signal
    assert s["Restart"] == "on-failure"
    assert set(s["CapabilityBoundingSet"].split()) == {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}
    assert s["RuntimeDirectory"] == "bgpd"  # runtime.dir's default, /run/bgpd
    assert "AF_NETLINK" in s["RestrictAddressFamilies"].split()
