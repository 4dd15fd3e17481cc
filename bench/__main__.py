"""``python -m bench``: the exporter against its baselines at mainnet scale; prints one table."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields

from bench.report import notes, summarize, table
from bench.run import Options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    defaults = Options()
    for f in fields(Options):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool" or isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(getattr(defaults, f.name)), default=f.default)
    parser.add_argument("--json", metavar="PATH", help="also write the raw results and the summary as JSON")
    args = parser.parse_args(argv)
    options = Options(**{f.name: getattr(args, f.name) for f in fields(Options)})

    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    result = run(options, progress)
    summary = summarize(result)
    print(table(summary))
    print()
    print(notes(summary))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"result": result, "summary": summary}, out, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
