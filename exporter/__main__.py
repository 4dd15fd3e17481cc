"""``python -m exporter``: the same entry point as the console script."""

from .cli import main

raise SystemExit(main())
