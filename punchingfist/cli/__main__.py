"""`python -m punchingfist.cli`: the `punchingfist` command."""

import sys

from punchingfist.cli import main

sys.exit(main())
