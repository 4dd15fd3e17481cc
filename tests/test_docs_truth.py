"""Every name the documentation gives exists: metrics, alerts, flags, config keys, environment
variables, make targets, paths and the exporter's commands, in README.md, docs/*.md,
config.example.yaml, prometheus.yml and the dashboards.

Each kind of name is checked against what the code itself uses, never a list kept here: metric
names against the table the exporter renders from, alerts and recording rules against the rule
files, flags and commands against the real argument parser, config keys against what the config
parser accepts (asked by feeding it unknown keys), make targets against the Makefile. So a rename
in the code fails here until the docs follow. What is checked where, to stay strict but quiet:
`bittensor_*` and `Bittensor*` names everywhere; flags, make targets, paths, config keys written
`a.b` and environment variables in code (inline spans and fenced blocks) of the markdown pages,
and anywhere in the YAML files; YAML blocks that configure the exporter are parsed whole.
"""

from __future__ import annotations

import ast
import functools
import re
import shlex
from pathlib import Path

import pytest
import yaml

from exporter.cli import ENVIRONMENT, build_parser
from exporter.flag_errors import option_strings
from exporter.config_error import ConfigError
from exporter.config_load import parse_config
from exporter.serving.metric_defs import exposed_names

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
YAML_FILES = [REPO / "config.example.yaml", REPO / "prometheus.yml"]
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))

# Flags of other programs the docs name: `make lock LOCK_ARGS=--upgrade` (uv's), a node's response
# limit (substrate's, which chain.max_response_bytes mirrors).
OTHER_PROGRAMS_FLAGS = {"--upgrade", "--upgrade-package", "--rpc-max-response-size",
                        # Prometheus' own, which docs/alerts-guide.md explains
                        "--rules.alert.for-grace-period", "--rules.alert.for-outage-tolerance", "--rules.alert.resend-delay"}
# Series Prometheus itself writes, which look like environment variables.
PROMETHEUS_SERIES = {"ALERTS_FOR_STATE"}
# Python modules whose names look like metrics: the SDK's codec.
NOT_METRICS = {"bittensor_core"}
# Files the operator creates, never committed.
OPERATOR_FILES = {
    "config.yaml", "web.yml", "alertmanager/discord_webhook_url", "alertmanager/heartbeat_url", "backups/",
    "backups", "history.db", "demo-history.db", ".env",
}
PATH_SUFFIXES = (".py", ".md", ".yml", ".yaml", ".json", ".toml", ".lock", ".service", ".js", ".prom", ".txt")


# -- what exists ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def rules() -> tuple[frozenset, frozenset]:
    """(alert names, recording rule names) of every rule file Prometheus loads."""
    alerts, records = set(), set()
    for path in (REPO / "alerting").glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                (alerts if "alert" in rule else records).add(rule.get("alert") or rule.get("record"))
    return frozenset(alerts), frozenset(records)


@functools.lru_cache(maxsize=None)
def config_keys() -> frozenset[str]:
    """Every key the config parser accepts, as dotted paths ('scope.watch[].alias'), found by
    offering it an unknown key at each level and reading the keys its refusal allows."""
    def allowed(document: dict, where: str) -> list[str]:
        try:
            parse_config(document)
        except ConfigError as error:
            for problem in error.problems:
                match = re.match(rf"{re.escape(where)}zz: unknown key \(allowed: (.*)\)$", problem)
                if match:
                    return match.group(1).split(", ")
        return []

    keys = set()
    for section in allowed({"zz": 1}, ""):
        keys.add(section)
        for key in allowed({section: {"zz": 1}}, f"{section}."):
            keys.add(f"{section}.{key}")
            for item in allowed({section: {key: [{"zz": 1}]}}, f"{section}.{key}[0]."):
                keys.add(f"{section}.{key}[].{item}")
            for sub in allowed({section: {key: {"zz": 1}}}, f"{section}.{key}."):
                keys.add(f"{section}.{key}.{sub}")
    assert {"chain.endpoints", "scope.watch[].hotkey", "history.path"} <= keys, keys
    return frozenset(keys)


@functools.lru_cache(maxsize=None)
def exporter_flags() -> frozenset[str]:
    return frozenset(option_strings(build_parser()))


@functools.lru_cache(maxsize=None)
def module_flags() -> frozenset[str]:
    """The flags of the simulated node's and the benchmarks' commands, from their sources."""
    flags = set()
    tools = [*(REPO / "simnode").glob("*.py"), *(REPO / "bench").glob("*.py"), *(REPO / "tools").glob("*.py"),
             REPO / "tests" / "proxy_rss.py"]  # the measurement the docs quote
    for path in tools:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                flags.update(a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--"))
    return frozenset(flags)


@functools.lru_cache(maxsize=None)
def make_targets() -> frozenset[str]:
    return frozenset(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))


@functools.lru_cache(maxsize=None)
def file_names() -> frozenset[str]:
    """The names of the repository's files (not the virtual environment's)."""
    names = set()
    for top in REPO.iterdir():
        if top.name not in (".venv", ".git") and top.is_dir():
            names.update(p.name for p in top.rglob("*") if ".venv" not in p.parts)
    return frozenset(names)


@functools.lru_cache(maxsize=None)
def named_in_the_code() -> str:
    """The code and configuration an upper-case name (an environment or make variable) may come from."""
    sources = [*(REPO / "exporter").rglob("*.py"), *(REPO / "simnode").glob("*.py"), REPO / "Makefile", REPO / "docker-compose.yml", REPO / "Dockerfile",
               *(REPO / "deploy").iterdir()]
    return "\n".join(p.read_text() for p in sources)


# -- what the pages name ------------------------------------------------------------------------


def code_of(text: str) -> list[str]:
    """The code of a markdown page: each fenced block's lines, and each inline code span."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return [line for block in fenced for line in block.splitlines()] + spans


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def sources() -> list[tuple[str, str, list[str]]]:
    """(file, whole text, its code) of every checked file; a YAML file is code throughout."""
    out = [(p.relative_to(REPO).as_posix(), p.read_text(), code_of(p.read_text())) for p in PAGES]
    out += [(p.name, p.read_text(), p.read_text().splitlines()) for p in YAML_FILES]
    out += [(p.relative_to(REPO).as_posix(), p.read_text(), []) for p in DASHBOARDS]
    return out


def ids():
    return [name for name, _, _ in sources()]


# -- the checks ------------------------------------------------------------------------------------


def wrong_metric_names(text: str) -> list[str]:
    alerts, records = rules()
    known = exposed_names() | records
    wrong = []
    for match in re.finditer(r"\bbittensor_[a-z0-9_]*[a-z0-9]\b(\*)?", text):
        name = match.group(0)
        if name in NOT_METRICS:
            continue
        if name.endswith("*"):  # a family of names: bittensor_validator_*
            if not any(k.startswith(name[:-1]) for k in known):
                wrong.append(name)
        elif name not in known:
            wrong.append(name)
    return wrong


def wrong_alert_names(text: str) -> list[str]:
    alerts, _ = rules()
    return [name for name in re.findall(r"\b(Bittensor[A-Z][A-Za-z]+)\b", text) if name not in alerts]


# Programs whose flags are theirs: a line running one is not checked for ours.
OTHER_PROGRAMS = {
    "pip", "pip3", "docker", "docker-compose", "systemctl", "systemd-analyze", "journalctl", "useradd", "install",
    "pm2", "curl", "git", "uv", "prometheus", "promtool", "amtool", "alertmanager", "htpasswd", "sqlite3", "ssh",
    "find", "grep", "tar", "rsync", "openssl", "apt-get", "kubectl", "helm",
}


def _runs_another_program(line: str) -> bool:
    words = [w for w in re.split(r"\s+", line.strip()) if w and w != "sudo" and not re.fullmatch(r"[A-Z_]+=\S*", w)]
    return bool(words) and words[0].rsplit("/", 1)[-1] in OTHER_PROGRAMS


def joined(code: list[str]) -> list[str]:
    """Code lines with their continuations (a trailing backslash) joined."""
    out, buffer = [], ""
    for line in code:
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        out.append(buffer + line)
        buffer = ""
    return out


def wrong_flags(code: list[str]) -> list[str]:
    known = exporter_flags() | module_flags() | OTHER_PROGRAMS_FLAGS
    wrong = []
    for line in joined(code):
        if _runs_another_program(line):
            continue
        for flag in re.findall(r"(?<![\w-])(--[a-zA-Z][\w.-]*[\w])", line):
            if re.search(r"\.[A-Z]+$", flag):  # --collector.NAME: a placeholder for a part
                pattern = re.escape(flag[: flag.rindex(".") + 1]) + r"[a-z_]+"
                if not any(re.fullmatch(pattern, k) for k in known):
                    wrong.append(flag)
            elif flag not in known:
                wrong.append(flag)
    return wrong


def wrong_make_targets(code: list[str]) -> list[str]:
    return [t for line in code for t in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", line) if t not in make_targets()]


def wrong_paths(code: list[str]) -> list[str]:
    top = {p.name for p in REPO.iterdir()}
    wrong = []
    for span in code:
        token = span.strip()
        if not re.fullmatch(r"\.?[\w-]+(?:[./][\w*.-]+)*/?", token) or token in OPERATOR_FILES:
            continue
        first = token.split("/")[0]
        if not (("/" in token and first in top) or token.endswith(PATH_SUFFIXES)):
            continue
        if re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", token) and token.split(".")[0] in {k.split(".")[0] for k in config_keys()} \
                and not token.endswith(PATH_SUFFIXES):
            continue  # a config key
        if "/" not in token and token in file_names():
            continue  # a module named in the table of its package
        if not list(REPO.glob(token.rstrip("/"))):
            wrong.append(token)
    return wrong


def _is_config_key(token: str) -> bool:
    keys = config_keys()
    key = re.sub(r"\[\d*\]", "[]", token)
    if key in keys:
        return True
    if key.endswith(".NAME"):  # collectors.NAME
        return any(k.startswith(key[:-4]) for k in keys)
    return False


def wrong_config_keys(code: list[str]) -> list[str]:
    sections = {k for k in config_keys() if "." not in k}
    wrong = []
    for span in code:
        for token in re.findall(r"(?<![\w./-])([a-z_]+(?:\[\d*\])?(?:\.(?:[a-z_]+|NAME)(?:\[\d*\])?)+)(?![\w/-])", span):
            if token.split(".")[0].split("[")[0] not in sections or token.endswith((".db", ".yml", ".yaml")):
                continue
            if not _is_config_key(token):
                wrong.append(token)
    return wrong


def wrong_yaml_config(text: str) -> list[str]:
    """Unknown keys in the YAML blocks that configure the exporter (top-level keys of its file)."""
    sections = {k for k in config_keys() if "." not in k}
    wrong = []
    for block in yaml_blocks(text):
        document = yaml.safe_load(block)
        if not isinstance(document, dict) or not set(document) & sections:
            continue  # Prometheus's or the web config's
        try:
            parse_config(document)
        except ConfigError as error:
            wrong += [p for p in error.problems if "unknown key" in p]
    return wrong


def wrong_commented_keys(text: str) -> list[str]:
    """The keys of config.example.yaml, commented-out ones included, by where they are indented."""
    wrong, path = [], {}
    for line in text.splitlines():
        commented = re.match(r"^( *)# ?(.*)$", line)
        content = commented.group(1) + commented.group(2) if commented else line
        key = re.match(r"^( *)(- )?([a-z_]+):(?: +([^ #]+))? *(?:#.*)?$", content)
        if not key:
            continue
        indent = len(key.group(1)) + (2 if key.group(2) else 0)
        path = {i: k for i, k in path.items() if i < indent}
        parent = path.get(indent - 2, "") if indent else ""
        if key.group(2):
            parent = path.get(indent - 4, "") + "[]"
            path[indent - 2] = parent
        dotted = f"{parent}.{key.group(3)}" if parent else key.group(3)
        if commented and indent == 0 and dotted not in config_keys():
            continue  # prose that happens to start with a word and a colon
        if dotted not in config_keys():
            wrong.append(dotted)
        path[indent] = dotted
    return wrong


def wrong_environment(text: str, code: list[str]) -> list[str]:
    ours = {name for name, _ in ENVIRONMENT}
    wrong = [v for v in re.findall(r"\b((?:BITTENSOR|SENTRY)_[A-Z0-9_]+)\b", text) if v not in ours]
    for span in code:
        for name in re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])\b", span):
            if name not in ours and name not in PROMETHEUS_SERIES and not re.search(rf"\b{name}\b", named_in_the_code()):
                wrong.append(name)
    return wrong


def _commands(code: list[str]) -> list[list[str]]:
    """The exporter's command lines in the code: the arguments after the program (or after `make
    history`'s ARGS), placeholders of alert templates and shell around them left out."""
    found = []
    for line in joined(code):
        line = re.sub(r"\{\{.*?\}\}", "X", line)
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, word in enumerate(words):
            # The program where a command starts (not an argument such as pm2's app name or an image tag).
            starts = i == 0 or words[i - 1] in ("&&", "||", "|", ";", "sudo") or re.fullmatch(r"[A-Z_]+=\S*", words[i - 1])
            program = word.endswith("bittensor-validator-exporter") or words[i:i + 3] == ["python", "-m", "exporter"] \
                or word.endswith("/python") and words[i + 1:i + 3] == ["-m", "exporter"]
            if starts and program:
                start = i + 1 if word.endswith("bittensor-validator-exporter") else i + 3
                args = []
                for arg in words[start:]:
                    if arg in ("&&", "||", "|", ";") or arg.startswith((">", "2>")):
                        break
                    args.append(arg)
                found.append([a for a in args if a != "..."])
            if word == "make" and i + 1 < len(words) and words[i + 1] == "history":
                extra = [w[len("ARGS="):] for w in words[i + 2:] if w.startswith("ARGS=")]
                found.append(["history", *(shlex.split(extra[0]) if extra else [])])
    return found


def wrong_commands(code: list[str]) -> list[str]:
    wrong = []
    parser = build_parser()
    for args in _commands(code):
        if args in ([], ["history", "..."]) or args[:1] == ["--help"]:
            continue
        try:
            parser.parse_args(args)
        except SystemExit:
            wrong.append(" ".join(args))
    return wrong


CHECKS = {
    "metrics": lambda text, code: wrong_metric_names(text),
    "alerts": lambda text, code: wrong_alert_names(text),
    "flags": lambda text, code: wrong_flags(code),
    "make targets": lambda text, code: wrong_make_targets(code),
    "paths": lambda text, code: wrong_paths(code),
    "config keys": lambda text, code: wrong_config_keys(code),
    "YAML config": lambda text, code: wrong_yaml_config(text),
    "environment": wrong_environment,
    "commands": lambda text, code: wrong_commands(code),
}


@pytest.mark.parametrize("name, text, code", sources(), ids=ids())
def test_every_name_the_docs_give_exists(name, text, code, capsys):
    problems = {kind: sorted(set(check(text, code))) for kind, check in CHECKS.items()}
    if name == "config.example.yaml":
        problems["config keys"] += wrong_commented_keys(text)
    problems = {kind: names for kind, names in problems.items() if names}
    assert not problems, f"{name} names what does not exist: {problems}"


def test_the_checks_find_a_wrong_name_of_each_kind():
    """Each check against a page with one wrong name of its kind (and the right one beside it)."""
    page = """
`bittensor_validator_stake_weight_alpha` and `bittensor_validator_stake_wieght_alpha`, BittensorParentRemoved
and BittensorParentRemovd. Run `make demo` or `make demoo`, with `--web.listen-address` or `--web.listen-adress`.
`config.example.yaml`, `dashboards/my-validators.json` and `dashboards/my-validator.json`; `history.path`, `scope.watch[].alias`
and `history.paht`; `BITTENSOR_EXPORTER_ENDPOINTS` and `BITTENSOR_EXPORTER_ENDPOINT`.

```sh
bittensor-validator-exporter history --hotkey 5F... --json
bittensor-validator-exporter histroy --json
make history ARGS="--kind take_changed --sinse 2026-11-01"
```

```yaml
scope:
  watch: []
  wacth: []
```
"""
    code = code_of(page)
    found = {kind: sorted(set(check(page, code))) for kind, check in CHECKS.items()}
    assert found == {
        "metrics": ["bittensor_validator_stake_wieght_alpha"],
        "alerts": ["BittensorParentRemovd"],
        "flags": ["--sinse", "--web.listen-adress"],
        "make targets": ["demoo"],
        "paths": ["dashboards/my-validator.json"],
        "config keys": ["history.paht"],
        "YAML config": ["scope.wacth: unknown key (allowed: mode, min_stake_weight, netuids, watch)"],
        "environment": ["BITTENSOR_EXPORTER_ENDPOINT"],
        "commands": ["history --kind take_changed --sinse 2026-11-01", "histroy --json"],
    }


def test_commented_keys_of_the_example_config_are_read_where_they_are_indented():
    text = "refresh:\n  # mode: interval\n  # moed: interval\n# collectors:\n#   stake_detail: true\n" \
           "scope:\n  # watch:\n  #   - hotkey: 5F...   # yours\n  #     alais: x\n"
    assert wrong_commented_keys(text) == ["refresh.moed", "scope.watch[].alais"]


def test_every_page_in_docs_is_checked():
    assert {p.name for p in PAGES} >= {"README.md", "metrics.md", "alerts.md", "configuration.md", "history.md",
                                        "operations.md", "architecture.md"}
