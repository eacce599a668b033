"""One error surface (`ttstrain.user_errors`): an error a user can cause (an option out of range, a damaged
checkpoint, a name that cannot be resolved offline) ends in one line on stderr and exit status 1; the traceback
only with TTSTRAIN_DEBUG=1; a bug keeps its traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ttstrain import cli
from ttstrain.models import resolve_model


def run(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_an_option_out_of_range_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("TTSTRAIN_DEBUG", raising=False)
    line = run(["label-mc", "--num_rollouts", "0", "--output_dir", str(tmp_path)], capsys)
    assert line.startswith("ttstrain label-mc: error: ") and "num_rollouts must be >= 1" in line


@pytest.fixture
def damaged_checkpoint(tmp_path):
    folder = tmp_path / "damaged"
    shutil.copytree(resolve_model("default"), folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:8 + int.from_bytes(data[:8], "little") + 1000])  # a copy cut short after its header
    return folder


def test_a_damaged_checkpoint_is_named_before_any_work(capsys, tmp_path, damaged_checkpoint, monkeypatch):
    monkeypatch.delenv("TTSTRAIN_DEBUG", raising=False)
    line = run(["sample", "--model_name_or_path", str(damaged_checkpoint), "--output_dir", str(tmp_path / "s")], capsys)
    assert f"model folder {damaged_checkpoint}: model.safetensors is truncated" in line
    line = run(["eval-prm", "--prm_path", str(damaged_checkpoint), "--prm_format", "trl",
                "--output_dir", str(tmp_path / "e")], capsys)
    assert f"PRM folder {damaged_checkpoint}: model.safetensors is truncated" in line
    assert not (tmp_path / "s" / "samples.parquet").exists()


def test_a_prm_name_that_cannot_be_resolved_offline_is_one_line(capsys, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("TTSTRAIN_DEBUG", raising=False)

    def offline(repo, filename):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    line = run(["search", "--prm_path", "org/not-a-prm", "--output_dir", str(tmp_path)], capsys)
    assert "cannot read the PRM 'org/not-a-prm': it is not a local folder nor in the Hugging Face cache" in line
    line = run(["search", "--prm_path", resolve_model("default"), "--output_dir", str(tmp_path)], capsys)
    assert "cannot tell how to read the PRM" in line and "--prm_format" in line  # a policy is not a PRM


def test_debug_shows_the_traceback_and_bugs_keep_theirs(tmp_path, monkeypatch):
    monkeypatch.setenv("TTSTRAIN_DEBUG", "1")
    with pytest.raises(ValueError, match="num_rollouts must be >= 1"):
        cli.main(["label-mc", "--num_rollouts", "0", "--output_dir", str(tmp_path)])
    monkeypatch.delenv("TTSTRAIN_DEBUG")

    def bug(cfg, **kw):
        raise KeyError("a bug, not the user's")

    monkeypatch.setattr("ttstrain.stages.sample.run_sample", bug)
    with pytest.raises(KeyError):
        cli.main(["sample", "--output_dir", str(Path(tmp_path) / "b")])
