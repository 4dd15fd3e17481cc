"""``python -m exporter``: the same entry point as the console script."""

import signal
import sys

# Until the CLI installs its own handlers (importing it takes a moment), a stop
# request is a clean exit, not a death by signal.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

from exporter.cli import main  # noqa: E402 - after the handler, on purpose

raise SystemExit(main())
