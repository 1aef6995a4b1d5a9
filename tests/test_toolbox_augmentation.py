"""Training augmentation knobs (data/presets.py): each changes the output it should, every knob
is declared, with GrayPreset's defaults, in the data configs, and strengths whose probability is
0 are named (no experiment composes any, nor classifier settings that change nothing)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.data.presets import GrayPreset, inert_strengths
from emotion_lightning.data.synthetic import SyntheticDataModule
from emotion_lightning.inert import plain_value, signature_defaults
from emotion_lightning.models.classifier import inert_settings
from tests.conftest import compose_cfg

# everything off: the train preset then equals the eval preset
OFF = {"hflip": 0.0, "affine_p": 0.0, "pad_crop": 0, "brightness_contrast": 0.0, "erasing_p": 0.0}
KNOBS = {
    "hflip": {"hflip": 1.0},
    "pad_crop": {"pad_crop": 6},
    "affine": {"affine_p": 1.0, "rotate": 30.0},
    "brightness_contrast": {"brightness_contrast": 0.4},  # without the affine (issue 23's bug)
    "erasing": {"erasing_p": 1.0, "erasing_scale": (0.2, 0.3)},
}


def _face() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(30, 220, (48, 48), dtype=np.uint8)


def _views(preset: GrayPreset, n: int = 8) -> list[torch.Tensor]:
    return [preset(_face()) for _ in range(n)]


def test_all_knobs_off_is_the_eval_preset():
    reference = GrayPreset(48)(_face())
    for view in _views(GrayPreset(48, train=True, **OFF)):
        assert torch.equal(view, reference)


@pytest.mark.parametrize("knob", sorted(KNOBS))
def test_each_augmentation_knob_changes_the_image(knob):
    reference = GrayPreset(48)(_face())
    views = _views(GrayPreset(48, train=True, **{**OFF, **KNOBS[knob]}))
    assert all(v.shape == (1, 48, 48) for v in views)
    assert any(not torch.equal(v, reference) for v in views), f"{knob} never changed the image"


def test_erasing_fills_a_rectangle_with_the_mean_gray():
    reference = GrayPreset(48)(_face())
    view = GrayPreset(48, train=True, **{**OFF, **KNOBS["erasing"]})(_face())
    changed = (view != reference)[0]
    rows, cols = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
    box = view[0, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert 0.2 * 48 * 48 * 0.5 <= box.numel() <= 0.3 * 48 * 48 * 1.5
    assert box.abs().max() < 0.02  # the mean gray normalises to ~0


def test_a_probability_out_of_range_names_the_knob():
    with pytest.raises(ValueError, match="erasing_p"):
        GrayPreset(48, train=True, erasing_p=1.5)


@pytest.mark.parametrize("data", ["fer", "wild", "synthetic"])
def test_data_configs_declare_every_knob_with_the_preset_defaults(data, tmp_path):
    cfg = compose_cfg("train", [f"data={data}", "data.augmentation.erasing_p=0.25"], tmp_path)
    declared = dict(cfg.data.augmentation)
    assert declared.pop("erasing_p") == 0.25  # an override needs no `+`
    defaults = signature_defaults(GrayPreset)
    assert set(declared) | {"erasing_p"} == set(defaults) - {"image_size", "train"}
    for key, value in declared.items():
        assert plain_value(value) == plain_value(defaults[key]), key


def test_inert_strengths_names_each_strength_its_zero_probability_leaves_unused():
    assert inert_strengths({"affine_p": 0.0, "scale": [0.8, 1.2], "translate": 0.1,
                            "rotate": 10.0, "erasing_p": 0.0, "erasing_ratio": (0.5, 2.0)}) == [
        "translate=0.1 (affine_p=0)", "scale=[0.8, 1.2] (affine_p=0)",
        "erasing_ratio=[0.5, 2.0] (erasing_p=0)"]
    assert inert_strengths({"affine_p": 0.5, "scale": [0.8, 1.2], "erasing_scale": (0.1, 0.2),
                            "erasing_p": 0.5}) == []
    assert inert_strengths({"affine_p": 0.0, "scale": (0.5, 1.0), "translate": 0.25}) == []
    assert inert_strengths({"erasing_ratio": (0.5, 2.0)}) == [
        "erasing_ratio=[0.5, 2.0] (erasing_p=0)"]


def test_the_datamodule_warns_about_inert_strengths_unless_it_does_not_augment(caplog):
    with caplog.at_level(logging.WARNING, logger="emotion_lightning.data.base"):
        SyntheticDataModule(augmentation={"affine_p": 0.0, "scale": [0.8, 1.2]})
        assert "scale=[0.8, 1.2] (affine_p=0) change nothing" in caplog.text
        caplog.clear()
        SyntheticDataModule(augment=False, augmentation={"affine_p": 0.0, "scale": [0.8, 1.2]})
        SyntheticDataModule(augmentation={"affine_p": 0.5, "scale": [0.8, 1.2]})
    assert caplog.text == ""


@pytest.mark.parametrize(
    "experiment", sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")))
def test_no_experiment_sets_a_knob_that_changes_nothing(experiment, tmp_path):
    cfg = compose_cfg("train", [f"experiment={experiment}"], tmp_path)
    assert inert_strengths(cfg.data.get("augmentation") or {}) == []
    if cfg.model._target_.endswith("EmotionClassifier"):
        assert inert_settings(cfg.model) == []
