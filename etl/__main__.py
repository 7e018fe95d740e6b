"""`python -m etl`: the same as the katapult-etl command."""

import sys

from .cli import main

sys.exit(main())
