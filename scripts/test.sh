#!/usr/bin/env bash
# Sets everything up, then runs every check: ruff, mypy (strict) and the whole pytest suite
# (unit, kernel-in-namespaces, end-to-end with ExaBGP and BIRD 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# everything the tests need is installed above: a skip means something is wrong (tests/conftest.py)
BGPD_TESTS_NO_SKIP=1 .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"
