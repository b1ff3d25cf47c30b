"""``python -m trainwell``: the ``trainwell`` command."""

import sys

from .cli import main

sys.exit(main())
