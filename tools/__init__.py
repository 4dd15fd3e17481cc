"""Developer tools run from a checkout (``make docs``); not part of the installed package."""
