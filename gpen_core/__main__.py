"""``python -m gpen_core``: see :mod:`gpen_core.cli`."""
from .cli import main

raise SystemExit(main())
