"""Every flag is checked before anything is stored; a flag that does not apply is an error or a printed note.

Each refused command must leave no store behind (the --db path is not even created).
"""

from __future__ import annotations

import dataclasses

import pytest

from mars_core.cli.main import main
from mars_core.run.config import RunConfig, settle_flags
from mars_core.store.sqlite import Store

TOY = ["--data", "toy", "--pairs", "40", "--budget", "8", "--folds", "0"]
DEMO = ["--data", "demo", "--pairs", "40", "--folds", "0"]


@pytest.mark.parametrize(("argv", "message"), [
    ([*DEMO, "--paraphraser", "foo:bar"], "--paraphraser foo:bar: unknown kind of model 'foo:'"),
    ([*DEMO, "--paraphraser", "/no/such/model"], "--paraphraser: model path '/no/such/model' does not exist"),
    ([*TOY, "--epochs", "-1"], "--epochs must be at least 1, got -1"),
    ([*TOY, "--epochs", "0"], "--epochs must be at least 1, got 0"),
    ([*TOY, "--curvature-params", "last_block"], "--curvature-params applies to --reward-model finetune only"),
    ([*DEMO, "--precision", "bf16"], "--precision applies to --reward-model finetune only"),
    ([*DEMO, "--base", "packaged:minilm", "--lr", "1e-4"], "--base, --lr applies to --reward-model finetune only"),
    ([*TOY, "--paraphraser", "packaged:smollm2"], "--paraphraser does not apply to the 2-D toy"),
    ([*DEMO, "--remote-deadline", "0"], "--remote-deadline: the remote deadline must be a positive number"),
    ([*DEMO, "--remote-deadline", "nan"], "--remote-deadline: the remote deadline must be a positive number"),
    ([*DEMO, "--max-paraphrase-failures", "1.5"], "--max-paraphrase-failures: max_failed_share must be in [0, 1]"),
    ([*DEMO, "--reward-model", "finetune", "--base", "packaged:nothing"], "--base packaged:nothing: no packaged model of that name"),
])
def test_a_bad_or_inapplicable_flag_is_refused_before_anything_is_stored(tmp_path, capsys, argv, message):
    db = tmp_path / "store" / "mars.db"
    assert main(["run", *argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not db.parent.exists(), "nothing was created"


def test_resume_refuses_a_name_a_negative_epoch_count_and_settings(tmp_path, capsys):
    db = tmp_path / "mars.db"
    assert main(["run", *TOY, "--epochs", "1", "--db", str(db)]) == 0
    capsys.readouterr()
    for argv, message in ((["--name", "x"], "--name names a new run; --resume 1 keeps the run's name"),
                          (["--epochs", "-1"], "--epochs must be at least 1, got -1"),
                          (["--tau", "3"], "--tau cannot change a stored run")):
        assert main(["run", "--resume", "1", *argv, "--db", str(db)]) == 2
        assert message in capsys.readouterr().err
    assert Store(db, read_only=True).last_epoch(1) == 1


def test_an_empty_base_folder_names_what_is_missing_not_sentencepiece(tmp_path, capsys):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    assert main(["run", *DEMO, "--reward-model", "finetune", "--base", str(empty), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err
    assert "is an empty folder" in err and "config.json" in err
    assert "sentencepiece" not in err and "tiktoken" not in err
    partial = tmp_path / "partial-model"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    assert main(["run", *DEMO, "--reward-model", "finetune", "--base", str(partial), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err
    assert "the folder lacks weights (model.safetensors or pytorch_model.bin), a tokenizer" in err
    assert not (tmp_path / "x.db").exists()


def test_mixed_precision_without_a_gpu_is_a_note_and_the_stored_config_says_what_runs():
    base = RunConfig()
    finetune = dataclasses.replace(base, reward=dataclasses.replace(base.reward, kind="finetune", precision="bf16"))
    settled, notes = settle_flags(finetune, {"--reward-model", "--precision"}, cuda=False)
    assert settled.reward.precision == "no"
    assert notes == ["note: --precision bf16 needs a CUDA GPU and this run has none: the stored config says "
                     "precision=no (on a CPU with AMX or AVX512-BF16, --cpu-bf16 runs the training steps in bfloat16)"]
    auto = dataclasses.replace(finetune, reward=dataclasses.replace(finetune.reward, precision="auto"))
    assert settle_flags(auto, {"--reward-model"}, cuda=False)[0].reward.precision == "no"
    assert settle_flags(auto, {"--reward-model"}, resolve_auto=False, cuda=False)[0].reward.precision == "auto"


def test_a_flag_that_changes_nothing_is_a_printed_note(tmp_path, capsys):
    db = tmp_path / "mars.db"
    assert main(["run", *TOY, "--strategy", "none", "--tau", "3", "--epochs", "1", "--db", str(db)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == ["note: --budget, --tau changes nothing with --strategy none (no paraphrases)"]
