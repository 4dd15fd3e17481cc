"""What an operator installs, checked without installing it: the lock files, the
Makefile and Dockerfile that install from them, the base image pin and labels, and
the service files of deploy/ against the install steps of docs/operations.md.

The systemd unit goes through ``systemd-analyze`` (verify, and its offline security
score) and the pm2 file through Node.js, the way systemd and pm2 read them; the
command lines of both through the exporter's own ``check-config``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10: the lock pins tomli there (pytest needs it)
    import tomli as tomllib

from exporter.cli import EXIT_CONFIG
from exporter.serving.status import REVISION_ENV
from tests.external_tools import require_tool
from tests.test_container import instructions, of

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OPERATIONS = (REPO / "docs" / "operations.md").read_text()  # the install steps
LOCKS = {"runtime": REPO / "requirements.lock", "test": REPO / "requirements-test.lock"}
UNIT = REPO / "deploy" / "bittensor-validator-exporter.service"
PM2 = REPO / "deploy" / "ecosystem.config.js"
SCRIPT = "bittensor-validator-exporter"


# -- lock files -----------------------------------------------------------------

def lock_entries(path: Path) -> list[tuple[Requirement, list[str]]]:
    """(requirement, hashes) per entry of a requirements file, continuation lines joined."""
    entries = []
    for line in re.sub(r"\\\n", " ", path.read_text()).splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"{path.name}: an option ({line}) in a lock file"
        spec, *options = re.split(r"\s+(?=--)", line)
        hashes = [o.split("=", 1)[1] for o in options if o.startswith("--hash=")]
        assert len(hashes) == len(options), f"{path.name}: {line}"
        entries.append((Requirement(spec), hashes))
    return entries


def pinned(requirement: Requirement) -> str:
    (spec,) = requirement.specifier
    assert spec.operator == "==" and "*" not in spec.version, requirement
    return spec.version


def declared(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return found


@pytest.mark.parametrize("lock", LOCKS.values(), ids=LOCKS.keys())
def test_lock_pins_every_entry_to_one_version_with_hashes(lock):
    entries = lock_entries(lock)
    assert len(entries) > 20
    for requirement, hashes in entries:
        pinned(requirement)
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), requirement
        assert not requirement.url and not requirement.extras, requirement
    text = lock.read_text()
    assert "make lock" in text.splitlines()[1], "the header names the command that writes it"
    assert not re.search(r"file:|/home/|/root/|/tmp/|/work/|index-url|find-links", text), "nothing of one machine"


@pytest.mark.parametrize("lock, extras", [(LOCKS["runtime"], ["sentry"]), (LOCKS["test"], ["sentry", "test", "bench"])],
                         ids=["runtime", "test"])
def test_lock_holds_every_declared_dependency_in_its_range(lock, extras):
    entries = lock_entries(lock)
    for requirement in declared(*extras):
        versions = [pinned(r) for r, _ in entries if canonicalize_name(r.name) == canonicalize_name(requirement.name)]
        assert versions, f"{requirement.name} is declared in pyproject.toml but not in {lock.name}: make lock"
        for version in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock.name} pins {requirement.name}=={version}, outside pyproject.toml's {requirement}: make lock")


def test_runtime_lock_is_the_test_lock_less_the_test_extra():
    """One resolution: the image's versions are the ones the tests run with."""
    test = {(canonicalize_name(r.name), str(r.marker)): (pinned(r), sorted(h)) for r, h in lock_entries(LOCKS["test"])}
    runtime = {(canonicalize_name(r.name), str(r.marker)): (pinned(r), sorted(h)) for r, h in lock_entries(LOCKS["runtime"])}
    for key, value in runtime.items():
        assert test.get(key) == value, f"{key[0]}: requirements.lock and requirements-test.lock differ: make lock"
    only_test = {name for name, _ in test.keys() - runtime.keys()}
    assert {"pytest", "hypothesis"} <= only_test and "sentry-sdk" not in only_test


@pytest.mark.parametrize("lock, extras", [(LOCKS["runtime"], ["sentry"]), (LOCKS["test"], ["sentry", "test"])],
                         ids=["runtime", "test"])
def test_lock_is_complete_for_this_python(lock, extras):
    """Every package the project needs here, transitively, through the extras asked for
    on the way (read from the installed packages' metadata), is in the lock: an install
    with --require-hashes needs nothing else."""
    env = default_environment()
    locked = {canonicalize_name(r.name) for r, _ in lock_entries(lock)
              if r.marker is None or r.marker.evaluate(env)}
    pending = [(r, "") for r in declared(*extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        assert name in locked, f"{name} is needed here but not in {lock.name}: make lock"
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed in this environment: nothing more to follow
        for extra in {""} | set(requirement.extras):
            pending += [(Requirement(r), extra) for r in requires]
    assert len(seen) > 30


# -- what installs from them ------------------------------------------------------

def make_rule(target: str) -> tuple[list[str], list[str]]:
    """(prerequisites, recipe lines) of a Makefile rule, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Makefile").read_text())
    match = re.search(rf"^{re.escape(target)}:([^\n]*)\n((?:\t[^\n]*\n)*)", text, re.M)
    assert match, target
    variables = dict(re.findall(r"^([A-Z_]+) [:?]?= ?(.*)$", text, re.M))
    recipe = [line.strip() for line in match.group(2).splitlines()]
    for _ in range(3):  # expand the Makefile's own variables
        recipe = [re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line) for line in recipe]
    return match.group(1).split(), recipe


def test_make_installs_the_test_lock_then_the_package_alone():
    prerequisites, recipe = make_rule("$(VENV)/.installed")
    assert {"pyproject.toml", "requirements.lock", "requirements-test.lock"} <= set(prerequisites), \
        "a new lock re-installs"
    pip = [line for line in recipe if " -m pip install " in line and "--upgrade pip" not in line]
    assert pip[0].endswith("pip install --quiet --require-hashes -r requirements-test.lock")
    assert pip[1:] == [pip[1]] and "--no-deps" in pip[1].split(), "the package itself resolves nothing"
    assert any(line.endswith("-m pip check") for line in recipe)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_make_lock_writes_both_locks_for_every_supported_python():
    _, recipe = make_rule("lock")
    compiles = [shlex.split(line) for line in recipe if " pip compile " in line]
    assert [c[c.index("--output-file") + 1] for c in compiles] == ["requirements-test.lock", "requirements.lock"]
    lowest = re.fullmatch(r">=\s*(3\.\d+)", PYPROJECT["project"]["requires-python"]).group(1)
    for command in compiles:
        assert {"--universal", "--generate-hashes"} <= set(command)
        assert command[command.index("--python-version") + 1] == lowest
        assert command[command.index("--custom-compile-command") + 1] == "make lock"
    assert "--constraint" in compiles[1] and compiles[1][compiles[1].index("--constraint") + 1] == "requirements-test.lock"
    assert "make lock" in OPERATIONS


def test_dockerfile_installs_the_locks_hash_checked():
    copied = [args.split()[0] for args in of("build", "COPY")]
    assert copied.index("requirements.lock") < copied.index("pyproject.toml"), "dependencies cached apart from the code"
    installs = [args for _, keyword, args in instructions() if keyword == "RUN" and "pip install" in args]
    assert of("build", "RUN")[1] == "/opt/venv/bin/pip install --require-hashes -r requirements.lock"
    assert "requirements-test.lock" in of("build-demo", "COPY")[0]
    for command in installs:
        for install in re.findall(r"pip install[^&]*", command):
            words = install.split()[2:]
            assert "--no-deps" in words or words in (["--require-hashes", "-r", "requirements.lock"],
                                                     ["--require-hashes", "-r", "requirements-test.lock"]), install
    assert all("pip check" in args for args in of("build", "RUN")[-1:] + of("build-demo", "RUN"))


def _arg_defaults() -> dict[str, str]:
    return dict(args.split("=", 1) for _, keyword, args in instructions() if keyword == "ARG" and "=" in args)


def test_base_image_is_pinned_by_digest_with_its_tag_and_date_beside_it():
    stages, defaults = [], _arg_defaults()
    for _, keyword, args in instructions():
        if keyword != "FROM":
            continue
        image = args.split()[0]
        stages.append(args.split()[-1])
        if image in stages:
            continue
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), f"{image}: tag and digest"
    text = (REPO / "Dockerfile").read_text()
    tag = defaults["PYTHON_IMAGE"].split("@")[0]
    comment = text[: text.index("ARG PYTHON_IMAGE=")].rsplit("\n\n", 1)[-1]
    assert tag in comment and re.search(r"\b20\d\d-\d\d-\d\d\b", comment), "the tag and the date of the digest"
    assert not text.lstrip().startswith("# syntax="), "no frontend image pulled by tag"


@pytest.mark.parametrize("stage", ["runtime", "demo"])
def test_images_carry_the_oci_labels(stage):
    text = " ".join(of(stage, "LABEL"))
    labels = dict(re.findall(r'org\.opencontainers\.image\.([\w.]+)="([^"]*)"', text))
    assert {"title", "description", "source", "licenses", "version", "revision", "created"} <= labels.keys()
    assert labels["licenses"] == PYPROJECT["project"]["license"]
    for key, arg in [("version", "VERSION"), ("revision", "REVISION"), ("created", "CREATED"), ("source", "SOURCE")]:
        assert labels[key] == "${%s}" % arg and any(a.startswith(arg) for a in of(stage, "ARG")), key
    version = [a.split("=", 1)[1] for a in of(stage, "ARG") if a.startswith("VERSION=")]
    assert version == [PYPROJECT["project"]["version"]]
    assert labels["base.name"] == "${PYTHON_IMAGE}"


def test_runtime_image_passes_the_revision_to_the_exporter():
    env = dict(e.split("=", 1) for e in of("runtime", "ENV"))
    assert env[REVISION_ENV] == "${REVISION}"
    assert [stage for stage, keyword, args in instructions() if keyword == "ENV" and REVISION_ENV in args] == ["runtime"]
    # Metadata comes last, so a new commit or build date leaves every layer cached.
    assert [k for s, k, _ in instructions() if s == "runtime"][-2:] == ["LABEL", "ENV"]


# -- service files ------------------------------------------------------------------

def unit() -> dict[str, list[str]]:
    """"Section.Key" -> values, in order (systemd allows a key more than once)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def _check_config(args: list[str], config: Path) -> subprocess.CompletedProcess:
    """The exporter's own check of a service's command line, with the config path
    swapped for ``config``."""
    i = args.index("--config.file")
    args = [*args[:i + 1], str(config), *args[i + 2:]]
    return subprocess.run([sys.executable, "-m", "exporter", "check-config", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_systemd_unit_runs_the_console_script_hardened():
    u = unit()
    exec_start = shlex.split(u["Service.ExecStart"][0])
    assert Path(exec_start[0]).name == SCRIPT and SCRIPT in PYPROJECT["project"]["scripts"]
    assert Path(exec_start[0]).parent.name == "bin" and Path(exec_start[0]).is_absolute()
    assert u["Service.User"] != ["root"] and u["Service.User"][0]
    assert u["Service.Restart"] == ["on-failure"]
    assert u["Service.RestartPreventExitStatus"] == [str(EXIT_CONFIG)]
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "")]:
        assert u[f"Service.{key}"] == [value], key
    state = u["Service.StateDirectory"][0]
    assert u["Service.WorkingDirectory"] == [f"%S/{state}"], "a relative history.path lands in the state directory"
    assert u["Service.EnvironmentFile"][0].lstrip("-").startswith("/etc/")
    assert u["Install.WantedBy"] == ["multi-user.target"]
    result = _check_config(exec_start[1:], REPO / "config.example.yaml")
    assert result.returncode == 0, result.stderr


def _unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's console script
    (systemd-analyze checks that it exists)."""
    script = Path(sys.executable).parent / SCRIPT
    if not script.exists():
        pytest.skip(f"{script} is not installed (make install)")
    exec_start = shlex.split(unit()["Service.ExecStart"][0])[0]
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(exec_start, str(script)))
    return copy


def test_systemd_accepts_the_unit(tmp_path):
    analyze = require_tool("systemd-analyze")
    result = subprocess.run([analyze, "verify", str(_unit_for_this_machine(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr  # no warning about the unit itself


def test_systemd_rates_the_unit_well_sandboxed(tmp_path):
    """systemd's own exposure score, 0 (locked down) to 10 (unprotected); 2 is "OK"."""
    analyze = require_tool("systemd-analyze")
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager",
                             str(_unit_for_this_machine(tmp_path))], capture_output=True, text=True, timeout=60)
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout).group(1))
    assert score <= 2.0, result.stdout


def test_readme_installs_what_the_unit_runs():
    u = unit()
    exec_start = shlex.split(u["Service.ExecStart"][0])
    venv = str(Path(exec_start[0]).parent.parent)
    config = exec_start[exec_start.index("--config.file") + 1]
    user = u["Service.User"][0]
    steps = OPERATIONS[OPERATIONS.index("## Running as a service"):]
    steps = steps[: steps.index("\n## ", 1)]
    assert re.search(rf"useradd --system .*\b{user}\b", steps), "the unit's user is created"
    assert f"python3 -m venv {venv}" in steps
    assert f"{venv}/bin/pip install --require-hashes -r requirements.lock" in steps
    assert f"{venv}/bin/pip install --no-deps ." in steps
    assert config in steps, "the config goes where ExecStart reads it"
    assert u["Service.EnvironmentFile"][0].lstrip("-") in steps
    assert f"deploy/{UNIT.name}" in steps and f"systemctl enable --now {UNIT.stem}" in steps
    assert "pm2 start deploy/ecosystem.config.js" in steps


def pm2_apps() -> list[dict]:
    node = require_tool("node", "nodejs")
    result = subprocess.run([node, "-e", f"process.stdout.write(JSON.stringify(require({json.dumps(str(PM2))})))"],
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)["apps"]


def test_pm2_file_runs_the_checkouts_console_script():
    (app,) = pm2_apps()
    assert Path(app["cwd"]) == REPO
    assert Path(app["script"]) == REPO / ".venv" / "bin" / SCRIPT, "what `make install` puts there"
    assert app["interpreter"] == "none", "an executable, not a Node.js script"
    assert app["autorestart"] is True and EXIT_CONFIG in app["stop_exit_codes"]
    assert app["kill_timeout"] >= 10_000
    config = app["args"][app["args"].index("--config.file") + 1]
    assert config == "config.yaml" and "config.yaml" in (REPO / ".gitignore").read_text().split()
    result = _check_config(app["args"], REPO / "config.example.yaml")
    assert result.returncode == 0, result.stderr


def test_service_files_fail_on_a_bad_config_with_the_code_they_do_not_restart_on(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("no_such_key: 1\n")
    result = _check_config(shlex.split(unit()["Service.ExecStart"][0])[1:], bad)
    assert result.returncode == EXIT_CONFIG and "no_such_key" in result.stderr
