"""The ttstrain command: dispatch, help, YAML defaults with CLI overrides, unknown keys failing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ttstrain.cli import COMMANDS, main
from ttstrain.stages.sample import make_parser


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_fails(capsys):
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_yaml_defaults_cli_overrides_unknown_keys_fail(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("num_samples: 3\ntemperature: 0.5\n")
    (cfg,) = make_parser().parse_args_and_config(["--config", str(good), "--num_samples", "5"])
    assert (cfg.num_samples, cfg.temperature) == (5, 0.5)
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_samples: 3\nnum_sample: 4\n")
    with pytest.raises(SystemExit):
        make_parser().parse_args_and_config(["--config", str(bad)])
    assert "unrecognized arguments in the --config file: ['--num_sample', '4']" in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "ttstrain.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout and "label-mc" in out.stdout
