"""``python -m radzoo.cli``: the same as the ``radzoo`` console script."""

import sys

from radzoo.cli import main

sys.exit(main())
