"""`python -m simaws` (what `make sim-aws` runs)."""

import sys

from simaws.stack import run

sys.exit(run())
