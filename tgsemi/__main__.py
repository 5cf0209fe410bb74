"""``python -m tgsemi``: the same command line as the ``tgsemi`` script."""

import sys

from tgsemi.cli import main

sys.exit(main())
