"""python -m dashboards_src [--check] [DIR]: write every dashboard's JSON into DIR (dashboards/),
or with --check only report the files that differ from what the code builds (exit 1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards_src.generate import DASHBOARD_DIR, differences, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards_src", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=DASHBOARD_DIR)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences(args.directory)
        for name in stale:
            print(f"{args.directory / name} differs from what dashboards_src builds: run `make dashboards`", file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
