"""``python -m bench``: the exporter against its baselines at mainnet scale; prints one table.

Then (unless ``--no-stages``) the CPU of each refresh stage on issue 15's larger chain
(``simnode.scenarios.larger``) at the injected latency, history on: ``python -m bench.stages``
in a process of its own, median of ``--stages-runs`` steady refreshes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields

from bench.report import notes, summarize, table
from bench.run import Options, run
from bench.stages import run_separately


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    defaults = Options()
    for f in fields(Options):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool" or isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(getattr(defaults, f.name)), default=f.default)
    parser.add_argument("--stages", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure each refresh stage's CPU on --stages-scenario (default on)")
    parser.add_argument("--stages-scenario", default="larger", help="its chain (default larger: issue 15's)")
    parser.add_argument("--stages-runs", type=int, default=5, help="its steady refreshes timed, after 2 (default 5)")
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
    document = {"result": result, "summary": summary}
    if args.stages:
        progress(f"per-stage CPU on the {args.stages_scenario} chain at {options.latency_ms:g} ms, history on "
                 "(python -m bench.stages, its own process)")
        stages = run_separately(args.stages_scenario, seed=options.seed, runs=args.stages_runs,
                                latency_ms=options.latency_ms, history=True)
        document["stages"] = stages
        print()
        print(f"Per-stage CPU of a steady refresh (python -m bench.stages, {stages['elapsed']:.0f} s):")
        print(stages["output"].rstrip())
    if args.json:
        with open(args.json, "w") as out:
            json.dump(document, out, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
