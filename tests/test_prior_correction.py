"""Prior correction: probabilities divided by the training prior to a power tau chosen on
validation (library, callback, checkpoints, ensembles, export and emotion-eval)."""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch

from emotion_lightning.callbacks import PriorCorrection
from emotion_lightning.cli.eval import evaluate
from emotion_lightning.data.base import GrayImageDataModule
from emotion_lightning.evaluation import ClassSubset
from emotion_lightning.export import export_classifier, max_abs_difference
from emotion_lightning.models import EmotionClassifier, load_model
from emotion_lightning.models.prior import (
    choose_prior_tau,
    correct_prior,
    prior_scores,
    training_log_prior,
)
from tests.conftest import compose_cfg, one_torch_thread, tiny_checkpoint


def test_tau_zero_changes_nothing_and_tau_one_divides_by_the_prior():
    log_prior = training_log_prior([90, 10])
    torch.testing.assert_close(log_prior.exp(), torch.tensor([0.9, 0.1]))
    probs = torch.tensor([[0.7, 0.3], [0.95, 0.05]])
    assert correct_prior(probs, log_prior, 0.0) is probs
    corrected = correct_prior(probs, log_prior, 1.0)
    expected = probs / torch.tensor([0.9, 0.1])
    torch.testing.assert_close(corrected, expected / expected.sum(dim=1, keepdim=True))
    assert corrected[0].argmax() == 1 and corrected[1].argmax() == 0


def test_balanced_class_weights_leave_a_uniform_prior():
    counts = torch.tensor([300.0, 20.0, 80.0])
    weights = counts.sum() / (3 * counts)
    torch.testing.assert_close(training_log_prior(counts, weights), torch.full((3,), -math.log(3)))


def test_the_chosen_tau_finds_a_rare_class_the_raw_argmax_misses():
    # class 1 (10% of the data) is always given 0.3: the raw argmax never predicts it
    labels = torch.tensor([0] * 90 + [1] * 10)
    probs = torch.tensor([[0.8, 0.2]] * 90 + [[0.7, 0.3]] * 10)
    log_prior = training_log_prior([90, 10])
    assert prior_scores(probs, labels, log_prior, 0.0)["recall"] == [1.0, 0.0]
    tau, rows = choose_prior_tau(probs, labels, log_prior, metric="balanced_acc")
    assert [r["tau"] for r in rows] == [round(0.1 * i, 1) for i in range(11)]
    best = next(r for r in rows if r["tau"] == tau)
    assert best["balanced_acc"] == 1.0 and best["recall"] == [1.0, 1.0]
    # the smallest of the tied taus: 0.2 flips the rare class (0.3/0.1^0.2 > 0.7/0.9^0.2)
    assert tau == min(r["tau"] for r in rows if r["balanced_acc"] == 1.0)
    # accuracy alone is maximised by the same tau here, never by a larger one
    assert choose_prior_tau(probs, labels, log_prior, metric="acc")[0] == tau
    with pytest.raises(ValueError, match="metric must be one of"):
        choose_prior_tau(probs, labels, log_prior, metric="loss")
    with pytest.raises(ValueError, match=">= 0"):
        choose_prior_tau(probs, labels, log_prior, taus=[-0.5])


class Arrays(GrayImageDataModule):
    """Two classes told apart by brightness, 9:1 in training, 1:1 in val and test."""

    def __init__(self, seed: int = 0, **loader) -> None:
        super().__init__(["happy", "disgust"], batch_size=16, num_workers=0, augment=False, **loader)
        self.seed = seed

    def load_splits(self, stage):
        rng = np.random.default_rng(self.seed)

        def faces(n0, n1):
            labels = np.array([0] * n0 + [1] * n1)
            images = rng.integers(0, 120, (len(labels), 48, 48)).astype(np.uint8)
            images[labels == 1] += 60
            return images, labels

        return {"train": faces(72, 8), "val": faces(16, 16), "test": faces(16, 16)}


def test_fit_records_the_prior_and_testing_chooses_tau_on_validation(tmp_path):
    torch.manual_seed(0)
    data = Arrays()
    model = EmotionClassifier(data.class_names, arch="resnet18", test_time_flip=True)
    tuner = PriorCorrection(taus=[0.0, 0.5, 1.0], metric="balanced_acc")
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, accelerator="cpu", callbacks=[tuner],
                        default_root_dir=tmp_path)
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
        torch.testing.assert_close(model.log_prior.exp(), torch.tensor([0.9, 0.1]))
        assert model.prior_tau == 0.0  # the fit itself is not corrected
        trainer.test(model, datamodule=data, verbose=False)
        x, y = (torch.cat(t) for t in zip(*data.val_dataloader()))
        with torch.no_grad():
            val_probs = model.eval().predict_proba(x, corrected=False)
    # the table scores the validation split (the test split is never looked at)
    assert choose_prior_tau(val_probs, y, model.log_prior, [0.0, 0.5, 1.0],
                            "balanced_acc") == (model.prior_tau, tuner.table)
    logged = trainer.callback_metrics
    assert float(logged["prior/tau"]) == model.prior_tau == model.hparams.prior_tau
    assert model.prior_tau in (0.0, 0.5, 1.0)
    chosen = next(r for r in tuner.table if r["tau"] == model.prior_tau)
    assert float(logged["prior/val_balanced_acc"]) == pytest.approx(chosen["balanced_acc"])
    assert chosen["balanced_acc"] == max(r["balanced_acc"] for r in tuner.table)
    assert float(logged["prior/val_balanced_acc_uncorrected"]) == pytest.approx(
        tuner.table[0]["balanced_acc"])
    saved = json.loads((tmp_path / "prior_search.json").read_text())
    assert saved["tau"] == model.prior_tau and saved["classes"] == ["happy", "disgust"]
    assert saved["rows"] == tuner.table and saved["faces"] == 32


def test_a_fast_dev_run_chooses_on_one_validation_batch(tmp_path):
    data = Arrays()
    model = EmotionClassifier(data.class_names, arch="resnet18")
    tuner = PriorCorrection()
    trainer = L.Trainer(fast_dev_run=True, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=[tuner],
                        default_root_dir=tmp_path)
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
        trainer.test(model, datamodule=data, verbose=False)
    assert tuner.faces == 16 and len(tuner.table) == 11  # one batch of the 32 val faces


def with_prior(checkpoint, path, counts, prior_tau=None):
    """A copy of ``checkpoint`` whose training prior is ``counts`` (and ``prior_tau`` set)."""
    payload = torch.load(checkpoint, weights_only=True)
    payload["state_dict"]["log_prior"] = training_log_prior(counts)
    if prior_tau is not None:
        payload["hyper_parameters"]["prior_tau"] = prior_tau
    torch.save(payload, path)
    return path


def test_the_training_prior_is_saved_and_old_checkpoints_load_uniform(tmp_path, checkpoint):
    counts = [50, 5, 20, 15, 10]
    saved = with_prior(checkpoint, tmp_path / "with_prior.ckpt", counts, prior_tau=0.4)
    model = load_model(saved)
    torch.testing.assert_close(model.log_prior, training_log_prior(counts))
    assert model.prior_tau == 0.4 and load_model(saved, prior_tau=0).prior_tau == 0.0
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model.predict_proba(x),
                                   correct_prior(model.predict_proba(x, corrected=False),
                                                 training_log_prior(counts), 0.4))
    old = tmp_path / "old.ckpt"
    payload = torch.load(saved, weights_only=True)
    payload["state_dict"].pop("log_prior")
    torch.save(payload, old)
    torch.testing.assert_close(load_model(old).log_prior, torch.full((5,), -math.log(5)))
    with pytest.raises(ValueError, match="prior_tau must be a number >= 0"):
        load_model(saved, prior_tau="strong")


@pytest.fixture(scope="module")
def skewed_pair(tmp_path_factory, checkpoint):
    folder = tmp_path_factory.mktemp("skewed")
    second = tiny_checkpoint(tmp_path_factory.getbasetemp(), seed=1)
    return [with_prior(checkpoint, folder / "a.ckpt", [40, 4, 30, 16, 10]),
            with_prior(second, folder / "b.ckpt", [30, 6, 30, 20, 14])]


def test_an_ensemble_corrects_its_averaged_probabilities(skewed_pair):
    ensemble = load_model(skewed_pair, prior_tau=0.7)
    assert ensemble.prior_tau == 0.7
    priors = torch.stack([m.log_prior.exp() for m in ensemble.members])
    torch.testing.assert_close(ensemble.log_prior.exp(), priors.mean(dim=0))
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        raw = torch.stack([m.predict_proba(x, corrected=False) for m in ensemble.members]).mean(0)
        torch.testing.assert_close(ensemble.predict_proba(x),
                                   correct_prior(raw, ensemble.log_prior, 0.7))
        assert not torch.allclose(ensemble.predict_proba(x), raw)


@pytest.mark.parametrize("which", ["single", "ensemble"])
def test_exported_files_apply_the_prior_correction(skewed_pair, tmp_path, which):
    ckpt = skewed_pair[0] if which == "single" else skewed_pair
    paths = export_classifier(ckpt, tmp_path, ["torchscript"], name="m", prior_tau=0.6)
    metadata = json.loads(paths["metadata"].read_text())
    assert metadata["prior_tau"] == 0.6 and len(metadata["training_prior"]) == 5
    corrected = load_model(ckpt, prior_tau=0.6)
    assert max_abs_difference(corrected, paths)["torchscript"] < 1e-4  # emotion-export's tolerance
    # the file carries the weights prior^-0.6 (how much they move the outputs depends on how
    # sure the random network is about random input, so the weights are checked, not a gap)
    scripted = torch.jit.load(str(paths["torchscript"]))
    prior = torch.tensor(metadata["training_prior"])
    torch.testing.assert_close(scripted.weights[0], prior ** -0.6)
    torch.testing.assert_close(prior.log(), corrected.log_prior)


def test_emotion_eval_chooses_tau_on_val_and_reports_the_search(skewed_pair, tmp_path):
    data = ["data=synthetic", "data.num_train=20", "data.num_val=30", "data.num_test=30",
            "data.num_workers=0"]
    with one_torch_thread():
        result = evaluate(compose_cfg("eval", [f"ckpt_path={skewed_pair[0]}", "prior_tau=auto",
                                               "prior_metric=balanced_acc", *data], tmp_path))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    search = saved["prior_search"]
    assert search["metric"] == "balanced_acc" and search["split"] == "val"
    assert len(search["rows"]) == 11
    best = max(search["rows"], key=lambda r: (r["balanced_acc"], -r["tau"]))
    assert saved["prior_tau"] == result["prior_tau"] == best["tau"]
    with one_torch_thread():
        fixed = evaluate(compose_cfg("eval", [f"ckpt_path={skewed_pair[0]}", "prior_tau=0",
                                              *data], tmp_path / "fixed"))
    assert fixed["prior_tau"] == 0.0 and "prior_search" not in fixed


def test_a_class_subset_corrects_with_the_prior_of_its_classes(skewed_pair):
    model = load_model(skewed_pair[0], prior_tau=0.7)
    subset = ClassSubset(model, ["disgust", "sad"])
    assert subset.prior_tau == 0.7
    torch.testing.assert_close(subset.log_prior.exp(), torch.tensor([4.0, 16.0]) / 20)
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        full = model.predict_proba(x)[:, [1, 3]]  # corrected on all five, then restricted
        torch.testing.assert_close(subset.predict_proba(x), full / full.sum(dim=1, keepdim=True))
        raw = model.predict_proba(x, corrected=False)[:, [1, 3]]
        torch.testing.assert_close(subset.predict_proba(x, corrected=False),
                                   raw / raw.sum(dim=1, keepdim=True))


def test_emotion_eval_scores_only_the_classes_asked_for(skewed_pair, tmp_path):
    data = ["data=synthetic", "data.num_train=20", "data.num_val=30", "data.num_test=30",
            "data.num_workers=0"]
    with one_torch_thread():
        result = evaluate(compose_cfg("eval", [f"ckpt_path=[{skewed_pair[0]},{skewed_pair[1]}]",
                                               "prior_tau=auto",
                                               "score_classes=[Sad,happy]", *data], tmp_path))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["scored_classes"] == ["happy", "sad"]  # the model's order, canonical names
    matrix = np.asarray(saved["confusion_matrix"]["matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == result["num_samples"] > 0
    assert len(saved["prior_search"]["rows"]) == 11
    assert saved["prior_tau"] == result["prior_tau"]
    for wrong, named in (("[happy,fear]", r"\['fear'\] are not among them"),
                         ("[happy]", "fewer than 2 classes \\(the classes of the checkpoint are")):
        with pytest.raises(ValueError, match=named):
            evaluate(compose_cfg("eval", [f"ckpt_path={skewed_pair[0]}",
                                          f"score_classes={wrong}", *data], tmp_path / "bad"))
