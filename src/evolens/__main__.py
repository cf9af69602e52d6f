"""``python -m evolens``: the command line."""

import sys

from evolens.cli import main

sys.exit(main())
