"""Every command's parser refuses abbreviated options and reads `none` as None (issue #20, defect 6)."""

from __future__ import annotations

import importlib

import pytest

from ttstrain.cli import COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_abbreviated_option(command, capsys):
    parser = importlib.import_module(COMMANDS[command][0]).make_parser()
    assert parser.allow_abbrev is False
    options = [a.option_strings[0] for a in parser._actions if a.option_strings and a.option_strings[0].startswith("--")]
    longest = max(options, key=len)
    with pytest.raises(SystemExit):
        parser.parse_args_and_config([longest[:-1], "1"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_num_sample_is_not_taken_for_num_samples(capsys):
    from ttstrain.stages.sample import make_parser

    with pytest.raises(SystemExit):
        make_parser().parse_args_and_config(["--num_sample", "2"])
    assert "--num_sample" in capsys.readouterr().err
    (cfg,) = make_parser().parse_args_and_config(["--num_samples", "2"])
    assert cfg.num_samples == 2


def test_split_none_on_the_command_line(tmp_path):
    from ttstrain.stages.label_mc import make_parser

    (cfg,) = make_parser().parse_args_and_config(["--split", "none", "--problems", "x.jsonl"])
    assert cfg.split is None
    (cfg,) = make_parser().parse_args_and_config(["--split", "test"])
    assert cfg.split == "test"


def test_training_arguments_keep_their_none_word():
    from ttstrain.stages.train_prm import make_parser

    (cfg,) = make_parser().parse_args_and_config(["--report_to", "none", "--output_dir", "x"])
    assert cfg.report_to in ("none", ["none"], [])


@pytest.mark.parametrize("old,new,command", [("--model", "--model_name_or_path", "ttstrain.stages.sample"),
                                             ("--prm", "--prm_path", "ttstrain.stages.eval_prm"),
                                             ("--orm", "--orm_path", "ttstrain.stages.eval_revision")])
def test_a_renamed_option_names_its_new_name(old, new, command, capsys):
    import importlib

    parser = importlib.import_module(command).make_parser()
    with pytest.raises(SystemExit):
        parser.parse_args_and_config([old, "x"])
    err = capsys.readouterr().err
    assert f"{old} is now {new}" in err and "unrecognized arguments" in err


def test_one_name_per_concept_across_stage_configs():
    """Every stage that takes a policy calls it model_name_or_path, every stage that takes a PRM prm_path."""
    import dataclasses

    from ttstrain.pipeline.demo import DemoConfig
    from ttstrain.stages.build_revisions import BuildRevisionsConfig
    from ttstrain.stages.eval_prm import EvalPRMConfig
    from ttstrain.stages.eval_revision import EvalRevisionConfig
    from ttstrain.stages.label_mc import LabelMCConfig
    from ttstrain.stages.run_search import SearchStageConfig
    from ttstrain.stages.sample import SampleConfig
    from ttstrain.prm.config import PRMConfig
    from ttstrain.trainers.revision_config import RevisionConfig

    for cls in (DemoConfig, BuildRevisionsConfig, EvalRevisionConfig, LabelMCConfig, SearchStageConfig, SampleConfig,
                PRMConfig, RevisionConfig):
        names = {f.name for f in dataclasses.fields(cls)}
        assert "model_name_or_path" in names and not names & {"model", "policy"}, cls.__name__
    for cls in (EvalPRMConfig, EvalRevisionConfig, SearchStageConfig):
        names = {f.name for f in dataclasses.fields(cls)}
        assert "prm_path" in names and "prm" not in names, cls.__name__
