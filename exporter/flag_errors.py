"""Command-line mistakes named plainly: an unknown flag or a wrong choice, with the nearest real one."""

from __future__ import annotations

import argparse
import difflib
import re
from typing import Optional, Sequence


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations (a prefix of a flag is a mistake, not that flag), whose
    errors suggest the nearest valid choice."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            message += _did_you_mean(choice.group(1), options)
        super().error(message)


def _did_you_mean(given: str, options: Sequence[str]) -> str:
    near = difflib.get_close_matches(given, options, n=1, cutoff=0.6)
    return f" (did you mean {near[0]}?)" if near else ""


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every --flag ``parser`` or any of its subcommands takes."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= option_strings(sub)
    return found


def unknown_flag(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Optional[str]:
    """The error for the first --flag in ``argv`` that no command takes, naming it and the nearest
    real one; None when every flag exists. Checked before parsing: argparse would otherwise take the
    flag's value for a command ("invalid choice: ':9745'") without naming the flag."""
    known = option_strings(parser)
    for arg in argv:
        if arg == "--":
            break
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            return f"unknown flag {flag}" + _did_you_mean(flag, sorted(known))
    return None
