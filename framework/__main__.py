"""``python -m framework`` runs the ``loom`` command."""

import sys

from framework.cli import main

sys.exit(main())
