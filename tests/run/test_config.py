"""RunConfig: JSON round trip, validation a user understands, and the cross-fitting size check."""

from __future__ import annotations

import json

import pytest

from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides


def test_a_config_survives_json_as_the_store_keeps_it():
    config = with_overrides(
        RunConfig(data=DataConfig(source="data/x.jsonl", column_map={"prompt": "q"}, test_source="data/y.jsonl",
                                  strict=True, n_pairs=50),
                  refine=RefineConfig(epochs=4, cross_fit_folds=3, total_budget=100)),
        allocation={"strategy": "won", "tau": 0.5, "cap_per_pair": 4},
        paraphrase={"model": "some/model"},
    )
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert hash(again.paraphrase) == hash(config.paraphrase), "tuples come back as tuples (hashable)"
    with pytest.raises(ValueError, match="unknown DataConfig settings: colour"):
        RunConfig.from_dict({"data": {"colour": "red"}})


@pytest.mark.parametrize("data, flag", [
    (dict(axis="harmless"), "--axis"), (dict(format="hh-rlhf"), "--format"),
    (dict(column_map={"prompt": "q"}), "--column-map"), (dict(test_source="t.jsonl"), "--test-data"),
])
def test_file_only_settings_are_refused_for_the_demos(data, flag):
    for demo in ("demo:text", "demo:toy"):
        with pytest.raises(ValueError, match=f"{flag} applies to data files only"):
            DataConfig(source=demo, **data)
    DataConfig(source="pairs.jsonl", **data)  # fine for a file


def test_axis_and_format_are_checked_always():
    with pytest.raises(ValueError, match="axis must be one of helpful, harmless"):
        DataConfig(source="pku.jsonl", axis="honest")
    with pytest.raises(ValueError, match="format must be auto or one of"):
        DataConfig(source="x.jsonl", format="xml")


def test_too_few_training_pairs_for_the_folds_names_folds_0():
    config = RunConfig(refine=RefineConfig(cross_fit_folds=5))
    with pytest.raises(ValueError, match=r"5-fold cross-fitting needs at least 5 training pairs, but there are 4.*--folds 0"):
        config.check_training_size(4)
    config.check_training_size(5)
    none = with_overrides(config, allocation={"strategy": "none"})
    assert not none.cross_fits
    none.check_training_size(4)  # no augmentation, no cross-fitting
    with_overrides(config, refine={"cross_fit_folds": 0}).check_training_size(4)
    with pytest.raises(ValueError, match="no training pairs"):
        none.check_training_size(0)


def test_a_column_map_names_fields_we_read():
    assert DataConfig(source="x.csv", column_map={"prompt": "question"}).column_map == {"prompt": "question"}
    with pytest.raises(ValueError, match="column map key 'colour' is not a field we read"):
        DataConfig(source="x.csv", column_map={"colour": "red"})


def test_a_config_stored_before_an_upgrade_still_opens_but_typos_do_not():
    stored = RunConfig().to_dict()
    stored["paraphrase"]["timeout_s"] = 300.0  # written by the version before seconds_per_token
    assert RunConfig.from_dict(stored) == RunConfig()
    stored["paraphrase"]["timeout_seconds"] = 300.0  # never a setting: still refused, by name
    with pytest.raises(ValueError, match="timeout_seconds"):
        RunConfig.from_dict(stored)


def test_a_run_stored_before_a_setting_existed_keeps_the_behaviour_it_was_stored_with():
    stored = RunConfig().to_dict()
    for name in ("min_validation_pairs", "cpu_bf16"):
        del stored["reward"][name]
    del stored["paraphrase"]["dtype"]
    old = RunConfig.from_dict(stored)
    assert (old.reward.min_validation_pairs, old.reward.cpu_bf16) == (8, False)
    assert old.paraphrase.dtype == "float32" != RunConfig().paraphrase.dtype  # its rows keep their name
    assert RunConfig.from_dict(RunConfig().to_dict()) == RunConfig()  # a new run's values are its own
    assert RunConfig().reward.min_validation_pairs != 8 or not RunConfig().reward.cpu_bf16
