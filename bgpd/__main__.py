"""`python -m bgpd` is the `bgpd` command."""

import sys

from bgpd.cli import main

sys.exit(main())
