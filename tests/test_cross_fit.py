"""Cross-fitting: seeded folds of the training faces, teachers trained without one, and the
out-of-fold soft labels a student distils from them."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emotion_lightning.cli.train import resume_checkpoint
from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.data.cross_fit import CrossFit, face_folds, records_cross_fit
from emotion_lightning.data.presets import normalize_batch
from emotion_lightning.models import EmotionClassifier, load_model
from emotion_lightning.models.distillation import teacher_groups
from emotion_lightning.models.weights import load_checkpoint_file
from tests.conftest import CLASSES, compose_cfg, one_torch_thread
from tests.helpers import TINY_SYNTHETIC


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8), dtype=np.uint8)


def test_a_faces_fold_depends_on_its_pixels_and_the_seed_only():
    faces = _faces(400)
    folds = face_folds(faces, 3, seed=5)
    assert set(folds.tolist()) == {0, 1, 2} and min(np.bincount(folds)) > 100
    order = np.random.default_rng(1).permutation(400)
    np.testing.assert_array_equal(face_folds(faces[order], 3, seed=5), folds[order])
    np.testing.assert_array_equal(face_folds(faces[:50], 3, seed=5), folds[:50])
    doubled = np.concatenate([faces[:10], faces[:10].copy()])
    twice = face_folds(doubled, 3, seed=5)
    np.testing.assert_array_equal(twice[:10], twice[10:])
    assert (face_folds(faces, 3, seed=6) != folds).mean() > 0.5


@pytest.mark.parametrize("folds, fold", [(1, 0), (2, 2), (3, -1)])
def test_a_fold_outside_the_folds_is_refused(folds, fold):
    with pytest.raises(ValueError, match=f"fold {fold} of {folds}"):
        CrossFit(folds, fold)


def test_folds_without_a_fold_to_leave_out_are_refused():
    with pytest.raises(ValueError, match="data.cross_fit_folds=3 needs data.cross_fit_fold"):
        SyntheticDataModule(num_train=8, cross_fit_folds=3)


def _data(fold: int | None, **kwargs) -> SyntheticDataModule:
    return SyntheticDataModule(num_train=48, num_val=8, num_test=8, batch_size=8, num_workers=0,
                               cross_fit_folds=2 if fold is not None else 1,
                               cross_fit_fold=fold, **kwargs)


def test_the_teachers_of_the_folds_train_on_the_rest_and_nothing_else_changes():
    whole = _data(None)
    whole.setup()
    faces, labels = whole.train_faces()
    fold_of = face_folds(faces, 2)
    for fold in (0, 1):
        data = _data(fold)
        data.setup()
        kept, kept_labels = data.train_faces()
        np.testing.assert_array_equal(kept, faces[fold_of != fold])
        np.testing.assert_array_equal(kept_labels, labels[fold_of != fold])
        for split in ("val", "test"):
            np.testing.assert_array_equal(data.datasets[split].images, whole.datasets[split].images)
        assert data.state_dict() == {"cross_fit": {"folds": 2, "fold": fold, "seed": 0}}
    assert whole.state_dict() == {"cross_fit": None}
    assert 10 < (fold_of == 0).sum() < 38


def _fit(data: SyntheticDataModule, path, precision: str = "32-true",
         **model_kwargs) -> EmotionClassifier:
    model = EmotionClassifier(data.class_names, arch="resnet18", **model_kwargs)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu",
                        precision=precision)
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    if path is not None:
        trainer.save_checkpoint(path)
    return model


@pytest.fixture(scope="module")
def fold_teachers(tmp_path_factory):
    """Two tiny teachers, each trained without one of two folds, and one trained on all."""
    base = tmp_path_factory.mktemp("cross_fit")
    paths = []
    for name, fold in (("fold0", 0), ("fold1", 1), ("whole", None)):
        torch.manual_seed(len(paths))
        _fit(_data(fold), base / f"{name}.ckpt")
        paths.append(str(base / f"{name}.ckpt"))
    return paths


def test_the_checkpoint_records_the_fold_and_a_resume_must_match(fold_teachers):
    records = [CrossFit.from_checkpoint(load_checkpoint_file(p)) for p in fold_teachers]
    assert records == [CrossFit(2, 0), CrossFit(2, 1), None]
    checkpoint = load_checkpoint_file(fold_teachers[0])
    state = next(v for v in checkpoint.values() if isinstance(v, dict) and "cross_fit" in v)
    _data(0).load_state_dict(state)
    for other in (_data(1), _data(None)):
        with pytest.raises(ValueError, match="resume with the same data.cross_fit_folds"):
            other.load_state_dict(state)
    # a fit on every face records that too, so resuming it cross-fitted is refused as well
    whole = load_checkpoint_file(fold_teachers[2])
    state = next(v for v in whole.values() if isinstance(v, dict) and "cross_fit" in v)
    assert state == {"cross_fit": None}
    _data(None).load_state_dict(state)
    with pytest.raises(ValueError, match=r"trained with cross-fit None, this run has CrossFit"):
        _data(0).load_state_dict(state)


def test_a_checkpoint_without_a_record_resumes_only_on_every_face(tmp_path, fold_teachers):
    """Checkpoints written before cross-fitting carry no datamodule state, so Lightning's resume
    check never runs for them: emotion-train refuses them as cross-fitted teachers itself."""
    checkpoint = load_checkpoint_file(fold_teachers[2])
    assert records_cross_fit(checkpoint)
    old = tmp_path / "run" / "checkpoints" / "last.ckpt"
    old.parent.mkdir(parents=True)
    torch.save({k: v for k, v in checkpoint.items()
                if not (isinstance(v, dict) and "cross_fit" in v)}, old)
    assert not records_cross_fit(load_checkpoint_file(old))
    resume = [*TINY_SYNTHETIC, "ckpt_path=last"]
    cfg = compose_cfg("train", [*resume, "+data.cross_fit_folds=2", "+data.cross_fit_fold=1"],
                      tmp_path / "run")
    with pytest.raises(ValueError, match=r"last\.ckpt records no cross-fit .* cannot resume as "
                                         r"a teacher without fold 1"):
        resume_checkpoint(cfg)
    assert resume_checkpoint(compose_cfg("train", resume, tmp_path / "run")) == str(old)
    torch.save(load_checkpoint_file(fold_teachers[0]), old)  # a recorded fold goes on to Lightning
    assert resume_checkpoint(cfg) == str(old)


def test_a_student_of_cross_fitted_teachers_gets_only_out_of_fold_soft_labels(fold_teachers):
    data = _data(None)
    _fit(data, None, teacher=fold_teachers[:2], distill_offline=True, distill_temperature=2.0,
         distill_weight=0.6)
    train = data.datasets["train"]
    fold_of = face_folds(train.images, 2)
    teachers = [load_model(p) for p in fold_teachers[:2]]
    with torch.no_grad():
        soft = [F.softmax(t(normalize_batch(train.images, 48)) / 2.0, dim=1).numpy()
                for t in teachers]
    # each face is labelled by the teacher that did not see it, the other never counts
    own = np.where((fold_of == 0)[:, None], soft[0], soft[1])
    expected = 0.4 * np.eye(len(CLASSES))[train.labels] + 0.6 * own
    np.testing.assert_allclose(train.targets, expected, atol=1e-5)
    averaged = 0.4 * np.eye(len(CLASSES))[train.labels] + 0.6 * (soft[0] + soft[1]) / 2
    assert np.abs(train.targets - averaged).max() > 1e-3
    # under autocast (bf16-mixed: the CPU recipes' precision) the trainer's forward context,
    # which can be entered once, covers every fold's teachers
    mixed = _data(None)
    _fit(mixed, None, "bf16-mixed", teacher=fold_teachers[:2], distill_offline=True,
         distill_temperature=2.0, distill_weight=0.6)
    np.testing.assert_allclose(mixed.datasets["train"].targets, expected, atol=0.03)


def test_mixed_missing_or_online_cross_fitted_teachers_are_refused(fold_teachers):
    fold0, _, whole = fold_teachers
    with pytest.raises(ValueError, match="mixes cross-fitted teachers"):
        _fit(_data(None), None, teacher=[fold0, whole], distill_offline=True)
    with pytest.raises(ValueError, match=r"without fold\(s\) \[1\] of 2.*data.cross_fit_fold=1"):
        _fit(_data(None), None, teacher=[fold0], distill_offline=True)
    with pytest.raises(ValueError, match="model.distill_offline=true"):
        _fit(_data(None), None, teacher=[fold0], distill_offline=False)
    with pytest.raises(ValueError, match="different folds or seeds"):
        teacher_groups([CrossFit(2, 0), CrossFit(3, 1)], _faces(4))
    groups = teacher_groups([None, None], _faces(4))
    assert [(g.tolist(), m) for g, m in groups] == [([0, 1, 2, 3], [0, 1])]
