"""``python -m gpen_core``: see :mod:`gpen_core.tools.cli`."""
from .tools.cli import main

raise SystemExit(main())
