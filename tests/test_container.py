"""The Dockerfile and .dockerignore, checked without a Docker daemon.

The image cannot be built here, so these tests check what can go wrong
without building: stage names, user, entry point, volume and config paths
that must agree with each other, the build context, and the health check
commands, which run for real against an exporter and a simulated node.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

import bcrypt
import pytest
import yaml


from exporter.config_load import load_config
from exporter.serving.routes import MetricsSource
from exporter.serving.server import MetricsServer
from tests.fakes import fake_publication
from exporter.serving.web_config import load_web_config
from tests.external_tools import require_tool

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = "/var/lib/bittensor-exporter"


def instructions() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) for every instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stage, found = "", []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else ""
        found.append((stage, keyword, args.strip()))
    return found


def of(stage: str, keyword: str) -> list[str]:
    return [args for s, k, args in instructions() if s == stage and k == keyword]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (ENTRYPOINT, CMD, HEALTHCHECK ... CMD)."""
    return json.loads(args[args.index("[") :])


def test_stages_and_base_image():
    stages = [s for s, k, _ in instructions() if k == "FROM"]
    assert stages == ["build", "build-demo", "base", "demo", "runtime"]  # runtime last: the default target
    assert 'ARG PYTHON_IMAGE=python:3.11-slim' in (REPO / "Dockerfile").read_text()
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    targets = {s["build"]["target"] for s in compose["services"].values() if "build" in s}
    assert targets <= set(stages)


@pytest.mark.parametrize("stage", ["runtime", "demo"])
def test_images_run_as_a_non_root_user(stage):
    assert of(stage, "USER") == ["exporter"]
    useradd = " ".join(of("base", "RUN"))
    assert re.search(r"useradd --system --uid (\d+)", useradd).group(1) != "0"


def test_runtime_entry_point_config_and_volume():
    assert exec_form(of("runtime", "ENTRYPOINT")[0]) == ["bittensor-validator-exporter"]
    # The console script pyproject.toml installs (tomllib is not in Python 3.10).
    assert re.search(r'^bittensor-validator-exporter = "exporter\.cli:main"$', (REPO / "pyproject.toml").read_text(), re.M)
    cmd = exec_form(of("runtime", "CMD")[0])
    assert cmd[0] == "--config.file"
    copies = [args.split() for args in of("runtime", "COPY") if not args.startswith("--from")]
    assert ["docker/config.yaml", cmd[1]] in copies
    assert json.loads(of("runtime", "VOLUME")[0]) == [DATA_DIR]
    assert of("runtime", "WORKDIR") == [DATA_DIR], "relative paths in a mounted config land on the volume"
    cache = dict(e.split("=", 1) for e in of("runtime", "ENV"))["BITTENSOR_RUNTIME_CACHE_DIR"]
    assert PurePosixPath(cache).is_relative_to(DATA_DIR), "the SDK's metadata cache needs a writable directory"


def test_image_config_keeps_history_on_the_volume_and_listens_where_checked():
    config = load_config(str(REPO / "docker" / "config.yaml"), environ={})
    assert PurePosixPath(config.history.path).is_relative_to(DATA_DIR)
    port = config.listen_address.rpartition(":")[2]
    assert of("runtime", "EXPOSE") == [port]
    assert exec_form(of("runtime", "HEALTHCHECK")[0])[-1] == port
    assert f"exporter:{port}" in (REPO / "prometheus.yml").read_text()


def _healthcheck(stage: str, port: int) -> int:
    """Run the stage's HEALTHCHECK command here: image paths mapped back to the
    repository's files, the port replaced. Returns the exit code."""
    command = exec_form(of(stage, "HEALTHCHECK")[0])
    assert command[0] == "python", "the slim image has python, not curl"
    copied = {dest: src for src, dest in (a.split() for a in of(stage, "COPY") if not a.startswith("--from"))}
    args = [str(REPO / copied[a]) if a in copied else re.sub(r"\b(9744|9944)\b", str(port), a) for a in command[1:]]
    return subprocess.run([sys.executable, *args], capture_output=True, timeout=30).returncode


def test_exporter_healthcheck_fails_until_a_fresh_refresh(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node)
    port = int(exporter.url.rpartition(":")[2])
    assert _healthcheck("runtime", port) != 0, "no refresh yet: /healthz answers 503"
    assert exporter.refresh()
    assert _healthcheck("runtime", port) == 0


@pytest.mark.parametrize("fresh", [True, False])
def test_exporter_healthcheck_follows_healthz_over_tls(tmp_path, fresh):
    """With --web.config.file serving TLS (and basic auth), the check still reads /healthz."""
    subprocess.run(
        [require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=exporter.example",
         "-keyout", str(tmp_path / "server.key"), "-out", str(tmp_path / "server.crt")],
        check=True, capture_output=True, timeout=60,
    )
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {tmp_path / 'server.crt'}\n  key_file: {tmp_path / 'server.key'}\n"
        f"basic_auth_users:\n  prometheus: '{bcrypt.hashpw(b'secret', bcrypt.gensalt(rounds=4)).decode()}'\n"
    )
    source = MetricsSource(lambda: fake_publication(fresh))
    server = MetricsServer("127.0.0.1", 0, source, load_web_config(str(tmp_path / "web.yml")))
    server.start()
    try:
        assert _healthcheck("runtime", server.port) == (0 if fresh else 1)
    finally:
        server.stop()


def test_simnode_healthcheck_sees_the_node(tricky_node):
    assert _healthcheck("demo", int(tricky_node.url.rpartition(":")[2])) == 0


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        candidates = prefixes + (["/".join(parts[i:]) for i in range(len(parts))] if pattern.startswith("**/") else [])
        glob = pattern[3:] if pattern.startswith("**/") else pattern
        if any(fnmatchcase(c, glob) for c in candidates):
            ignored = not negate
    return ignored


def test_build_context_holds_what_the_dockerfile_copies_and_no_secrets():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = [args.split()[0] for _, k, args in instructions() if k == "COPY" and not args.startswith("--from")]
    for source in sources + ["exporter/cli.py", "simnode/metadata/finney-metadata-v15.scale", "simnode/__main__.py"]:
        assert (REPO / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is needed in the build context"
    for secret in ["config.yaml", "alertmanager/discord_webhook_url", "history.db", ".venv/bin/python",
                   ".git/config", "exporter/__pycache__/cli.cpython-311.pyc", ".env"]:
        assert _ignored(secret, patterns), f"{secret} must stay out of the build context"


def test_demo_entry_point_serves_and_moves_the_demo_chain():
    """The demo image's command, run here on a free port with a fast change interval."""
    entry = exec_form(of("demo", "ENTRYPOINT")[0])
    assert entry[:3] == ["python", "-m", "simnode.demo"]
    args = [a if a != "9944" else "0" for a in entry[3:]] + ["--change-every", "0.2"]
    process = subprocess.Popen([sys.executable, "-m", entry[2], *args], cwd=REPO, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, process.kill)  # bounds the blocking reads below
    watchdog.start()
    try:
        assert process.stdout.readline().startswith("ws://0.0.0.0:")
        assert process.stdout.readline().startswith("change 0: block #3")  # the scenario is block 1, its pending set block 2
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0, "stops cleanly on SIGTERM"
        watchdog.cancel()
