"""``python -m trainwell.cli``: the ``trainwell`` command."""

import sys

from .app import main

sys.exit(main())
