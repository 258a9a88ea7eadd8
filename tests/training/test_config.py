import math

import pytest

from sda_web.training.config import (
    MAX_EPOCH_FACTOR, MAX_PREVIEWS, MIN_STEPS, ConfigError, OverfittingPreset, TrainingConfig, epochs_for_steps,
    get_adaptive_config,
)
from sda_web.training.schedule import LRPlan, kl_ramp_epochs, kl_weight_at


@pytest.mark.parametrize("files", [1, 5, 10, 11, 50, 51, 200, 201, 500])
@pytest.mark.parametrize("preset", list(OverfittingPreset))
def test_adaptive_config_is_valid_and_previews_are_bounded(files, preset):
    cfg = get_adaptive_config(files, preset)
    assert cfg.validated() is cfg
    assert cfg.preset == preset.value
    previews = math.ceil(cfg.epochs / cfg.preview_every)
    assert 1 <= previews <= MAX_PREVIEWS


def test_tiny_datasets_get_more_regularisation_and_augmentation():
    tiny, large = get_adaptive_config(5), get_adaptive_config(400)
    assert tiny.dropout > large.dropout
    assert tiny.weight_decay > large.weight_decay
    assert tiny.augment_gain_db > large.augment_gain_db
    assert tiny.epochs > large.epochs
    assert tiny.batch_size <= large.batch_size


@pytest.mark.parametrize("files, tier, batch", [(11, 200, 8), (24, 200, 8), (52, 120, 8), (124, 120, 16),
                                               (500, 80, 16), (5000, 80, 16)])
def test_a_default_run_takes_enough_optimiser_steps_without_running_away(files, tier, batch):
    # one step per batch of sounds: a set of tens of files got too few steps in its tier's epochs
    epochs = epochs_for_steps(tier, files, batch)
    per_epoch = math.ceil((files - max(1, round(files * 0.2))) / batch)
    assert epochs >= tier
    assert epochs * per_epoch >= MIN_STEPS or epochs == MAX_EPOCH_FACTOR * tier
    assert epochs == tier or epochs * per_epoch < MIN_STEPS + per_epoch  # no more than it takes


def test_the_smallest_sets_keep_their_epochs_and_a_kit_gets_more():
    assert epochs_for_steps(300, 5, 8) == 300 == get_adaptive_config(5).epochs  # they memorise first
    assert get_adaptive_config(52).epochs > 120  # its tier's epochs gave it 720 steps


def test_presets_order_epochs_learning_rate_and_dropout():
    c, b, a = (get_adaptive_config(30, p) for p in ("conservative", "balanced", "aggressive"))
    assert c.epochs < b.epochs < a.epochs
    assert c.learning_rate < b.learning_rate < a.learning_rate
    assert c.dropout > b.dropout > a.dropout


@pytest.mark.parametrize("overrides, word", [
    ({"epochs": 0}, "Max epochs"),
    ({"epochs": 2.5}, "Max epochs"),
    ({"learning_rate": -1e-3}, "Learning rate"),
    ({"learning_rate": 5.0}, "Learning rate"),
    ({"learning_rate": float("nan")}, "Learning rate"),
    ({"dropout": 1.0}, "Dropout"),
    ({"dropout": -0.1}, "Dropout"),
    ({"weight_decay": -1.0}, "Weight decay"),
    ({"kl_weight_max": float("inf")}, "KL weight"),
    ({"batch_size": 0}, "Batch size"),
])
def test_invalid_values_raise_a_clear_error(overrides, word):
    with pytest.raises(ConfigError, match=word):
        get_adaptive_config(20).with_overrides(**overrides)


def test_unknown_preset_and_empty_dataset_are_clear_errors():
    with pytest.raises(ConfigError, match="conservative, balanced, aggressive"):
        get_adaptive_config(10, "wild")
    with pytest.raises(ConfigError, match="at least one usable file"):
        get_adaptive_config(0)


def test_overriding_epochs_rederives_preview_interval_and_round_trips():
    cfg = get_adaptive_config(20).with_overrides(epochs=30, learning_rate=None)
    assert cfg.epochs == 30 and cfg.preview_every == 2
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg


def test_lr_warms_up_decays_and_never_climbs_when_extended():
    plan = LRPlan.new(1e-3, 100)
    lrs = [plan.lr_at(e) for e in range(100)]
    assert lrs[0] < lrs[plan.warmup_epochs]
    after = lrs[plan.warmup_epochs:]
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))
    extended = plan.extended_to(300, current_epoch=100)
    more = [extended.lr_at(e) for e in range(100, 300)]
    assert max(more) <= plan.lr_at(99) + 1e-12
    assert all(b <= a + 1e-12 for a, b in zip(more, more[1:]))
    # Extending mid-run continues from the LR reached, not from the base LR.
    mid = LRPlan.new(1e-3, 100).extended_to(200, current_epoch=50)
    assert mid.lr_at(50) == pytest.approx(plan.lr_at(50))


def test_kl_weight_anneals_to_its_max():
    ramp = kl_ramp_epochs(100, 0.3)
    weights = [kl_weight_at(e, ramp, 0.2) for e in range(100)]
    assert weights[0] < 0.02 and weights[-1] == pytest.approx(0.2)
    assert all(b >= a for a, b in zip(weights, weights[1:]))


def test_resuming_during_warm_up_still_reaches_the_base_lr():
    plan = LRPlan.new(1e-3, 100)  # 5 warm-up epochs
    extended = plan.extended_to(400, current_epoch=2)
    assert max(extended.lr_at(e) for e in range(2, 400)) == pytest.approx(1e-3)


def test_a_config_written_before_the_band_shift_was_named_so_still_reads():
    old = {**TrainingConfig().to_dict(), "epochs": 7}
    old["augment_pitch_bins"] = old.pop("augment_band_shift") - 2  # what runs before the rename recorded
    config = TrainingConfig.from_dict(old)
    assert config.augment_band_shift == 0 and config.epochs == 7


def test_runs_from_before_the_attribute_term_resume_without_it():
    from sda_web.training.config import TrainingConfig

    new = get_adaptive_config(40)
    assert new.attribute_weight == 0.1  # on for new runs
    assert TrainingConfig.from_dict(new.to_dict()).attribute_weight == 0.1
    old = {k: v for k, v in new.to_dict().items() if k != "attribute_weight"}  # a run's config.json of before
    assert TrainingConfig.from_dict(old).attribute_weight == 0.0
