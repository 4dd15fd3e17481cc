"""The command line as a newcomer meets it: --help first says what the program is, a mistyped
flag or command is named with the nearest real one, and a prefix of a flag is not that flag."""

from __future__ import annotations

import pytest

from exporter.cli import build_parser, main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


@pytest.mark.parametrize("argv, named, suggested", [
    (("--web.listen-adress", ":9745"), "--web.listen-adress", "--web.listen-address"),
    (("--web.listen-adress=:9745",), "--web.listen-adress", "--web.listen-address"),
    (("--web.listen", ":9745"), "--web.listen", "--web.listen-address"),  # no abbreviations
    (("--config.flie", "c.yaml"), "--config.flie", "--config.file"),
    (("history", "--hotky", "5F"), "--hotky", "--hotkey"),
    (("check-config", "--no-collector.stake-detail"), "--no-collector.stake-detail", "--no-collector.stake_detail"),
])
def test_a_mistyped_flag_is_named_with_the_nearest_real_one(capsys, argv, named, suggested):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert f"unknown flag {named} (did you mean {suggested}?)" in err
    assert "invalid choice" not in err, "the flag's value is not taken for a command"


def test_a_flag_nothing_resembles_is_still_named(capsys):
    code, _, err = run(capsys, "--zzzzzz")
    assert code == 2 and "unknown flag --zzzzzz\n" in err


def test_a_mistyped_command_or_choice_gets_a_suggestion(capsys):
    code, _, err = run(capsys, "histroy")
    assert code == 2 and "invalid choice: 'histroy'" in err and "(did you mean history?)" in err
    code, _, err = run(capsys, "--log.format", "jsno")
    assert code == 2 and "(did you mean json?)" in err


def test_flags_after_a_value_that_looks_like_a_flag_end_at_the_separator():
    from exporter.flag_errors import unknown_flag

    assert unknown_flag(build_parser(), ["history", "--hotkey", "5F", "--", "--not-a-flag"]) is None


def test_help_opens_with_what_it_is_and_the_most_used_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    head = out.splitlines()[:12]
    assert head[0].startswith("usage: bittensor-validator-exporter [COMMAND] [--config.file PATH]")
    assert "Prometheus exporter for Bittensor validators" in head[2]
    text = "\n".join(head)
    for command in ("--config.file config.yaml", "check-config", "history", "make demo"):
        assert command in text


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("bittensor-validator-exporter ")


def test_history_path_flag_overrides_the_config_file_for_every_command(tmp_path):
    from exporter.cli import resolve_config

    config = tmp_path / "c.yaml"
    config.write_text("history:\n  path: from-file.db\n")
    for argv in ([], ["history"], ["check-config"]):
        args = build_parser().parse_args([*argv, "--config.file", str(config)])
        assert resolve_config(args).history.path == "from-file.db"
        args = build_parser().parse_args([*argv, "--config.file", str(config), "--history.path", "flag.db"])
        assert resolve_config(args).history.path == "flag.db"


def test_check_config_checks_the_history_file_as_the_run_does(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f'history:\n  path: "{tmp_path}/missing/h.db"\n')
    assert main(["check-config", "--config.file", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"history.path: the directory {tmp_path}/missing does not exist" in err and "Traceback" not in err
    assert main(["check-config", "--config.file", str(config), "--history.path", str(tmp_path / "h.db")]) == 0
    assert capsys.readouterr().out == "configuration ok\n"
