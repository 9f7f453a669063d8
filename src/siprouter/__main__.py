"""``python -m siprouter``: the same as the ``siprouter`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
