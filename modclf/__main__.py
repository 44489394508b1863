"""``python -m modclf``: the same as the ``modclf`` command."""

import sys

from .cli import main

sys.exit(main())
