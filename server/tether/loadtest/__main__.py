"""``python -m tether.loadtest ...``: the same as ``tether loadtest ...``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
