"""Ensembles (emotion-eval/-detect/-export on several checkpoints, probabilities averaged),
soft targets (class-probability labels) and knowledge distillation from teachers."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emotion_lightning.cli.eval import evaluate
from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.data.base import SoftTargetDataset
from emotion_lightning.data.presets import normalize_batch
from emotion_lightning.detect import EmotionDetector
from emotion_lightning.export import export_classifier, max_abs_difference
from emotion_lightning.faces import FaceCrop
from emotion_lightning.models import ClassifierEnsemble, EmotionClassifier, load_model
from emotion_lightning.models.mixing import soft_cross_entropy
from tests.conftest import CLASSES, compose_cfg, one_torch_thread, tiny_checkpoint
from tests.helpers import StubFinder


@pytest.fixture(scope="module")
def pair(tmp_path_factory, checkpoint):
    """Two different tiny classifiers of the same five classes."""
    return checkpoint, tiny_checkpoint(tmp_path_factory.getbasetemp(), seed=1)


def test_an_ensemble_averages_its_members_probabilities(pair):
    ensemble = load_model(list(pair))
    single = load_model(pair[0])
    assert isinstance(ensemble, ClassifierEnsemble) and isinstance(single, EmotionClassifier)
    assert ensemble.class_names == CLASSES and not ensemble.training
    assert isinstance(load_model([pair[0]]), EmotionClassifier)  # a list of one: that model
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        members = [m.predict_proba(x) for m in ensemble.members]
        assert not torch.allclose(members[0], members[1])
        torch.testing.assert_close(ensemble.predict_proba(x), (members[0] + members[1]) / 2)


def test_members_of_other_classes_are_refused(pair, tmp_path):
    other = EmotionClassifier(["happy", "sad"], arch="resnet18")
    with pytest.raises(ValueError, match=r"b\.ckpt classifies \['happy', 'sad'\], the first member"):
        ClassifierEnsemble([load_model(pair[0]), other], ["a.ckpt", "b.ckpt"])
    with pytest.raises(ValueError, match="at least two"):
        ClassifierEnsemble([other])
    with pytest.raises(ValueError, match="non-empty list"):
        load_model([])


def test_emotion_eval_scores_an_ensemble(pair, tmp_path):
    data = ["data=synthetic", "data.num_train=20", "data.num_val=20", "data.num_test=40",
            "data.num_workers=0"]
    scores = {}
    for name, ckpt in {"a": str(pair[0]), "b": str(pair[1]),
                       "ab": f"[{pair[0]},{pair[1]}]"}.items():
        with one_torch_thread():
            scores[name] = evaluate(compose_cfg("eval", [f"ckpt_path={ckpt}", *data],
                                                tmp_path / name))
    saved = json.loads((tmp_path / "ab" / "metrics.json").read_text())
    assert saved["ckpt_path"] == [str(pair[0].resolve()), str(pair[1].resolve())]
    assert saved["num_samples"] == 40 and (tmp_path / "ab" / "confusion_matrix.png").is_file()
    assert len({round(scores[k]["loss"], 6) for k in scores}) == 3  # three different models


def test_emotion_detect_and_export_take_an_ensemble(pair, tmp_path):
    ensemble = load_model(list(pair))
    detector = EmotionDetector(ensemble, StubFinder([[10, 10, 60, 60]]), FaceCrop(align=False))
    (face,) = detector.detect(torch.randint(0, 255, (80, 80, 3), dtype=torch.uint8).numpy())
    assert face.label in CLASSES and list(face.probabilities) == CLASSES
    paths = export_classifier(list(pair), tmp_path, formats=["torchscript", "onnx"])
    assert paths["torchscript"].name == "tiny_ensemble2.pt"
    metadata = json.loads(paths["metadata"].read_text())
    assert metadata["ensemble_of"] == 2 and len(metadata["source_checkpoint"]) == 2
    assert max(max_abs_difference(ensemble, paths).values()) < 1e-4


def test_exports_keep_the_ten_crop_views(checkpoint, tmp_path):
    from emotion_lightning.models.loading import load_classifier

    model = load_classifier(checkpoint, test_time_flip=True, test_time_crop=40)
    paths = export_classifier(checkpoint, tmp_path, formats=["torchscript"])
    assert json.loads(paths["metadata"].read_text())["test_time_crop"] == 0  # the checkpoint's
    model.hparams.test_time_crop = 40
    from emotion_lightning.export import export_metadata, export_torchscript

    export_torchscript(model, tmp_path / "crop.pt", export_metadata(model))
    assert max_abs_difference(model, {"torchscript": tmp_path / "crop.pt"})["torchscript"] < 1e-5


# -- soft targets ------------------------------------------------------------------------------
def test_class_probability_targets_train_with_the_soft_loss():
    model = EmotionClassifier(["happy", "sad", "surprise"], arch="resnet18", label_smoothing=0.1)
    x = torch.randn(4, 1, 48, 48)
    votes = torch.tensor([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    torch.manual_seed(0)
    loss = model.training_step((x, votes), 0)
    with torch.no_grad():
        expected = soft_cross_entropy(model(x), votes, model.class_weight, 0.1)
    torch.testing.assert_close(loss.detach(), expected)
    hard = model.training_step((x, votes.argmax(dim=1)), 0)
    assert not torch.isclose(loss, hard)


# -- distillation ------------------------------------------------------------------------------
def _student(teachers, **kwargs) -> tuple[EmotionClassifier, SyntheticDataModule, L.Trainer]:
    data = SyntheticDataModule(num_train=16, num_val=8, num_test=8, batch_size=8, num_workers=0)
    model = EmotionClassifier(data.class_names, arch="resnet18", teacher=teachers, **kwargs)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, accelerator="cpu")
    return model, data, trainer


def test_a_student_learns_the_teachers_softened_average(pair, tmp_path):
    model, data, trainer = _student([str(p) for p in pair], distill_temperature=3.0,
                                    distill_weight=0.7)
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    assert len(model._teachers) == 2
    assert not any(k.startswith(("_teachers", "teacher")) for k in model.state_dict())
    x, y = next(iter(data.train_dataloader()))
    with torch.no_grad():
        logits = model(x)
        target = torch.stack([F.softmax(t(x) / 3.0, dim=1) for t in model._teachers]).mean(0)
        kl = F.kl_div(F.log_softmax(logits / 3.0, dim=1), target, reduction="batchmean")
        expected = 0.3 * model._loss(logits, y) + 0.7 * 9.0 * kl
        torch.testing.assert_close(model._distilled(model._loss(logits, y), logits, x)[0],
                                   expected)
    assert all(not p.requires_grad for t in model._teachers for p in t.parameters())
    trainer.save_checkpoint(tmp_path / "student.ckpt")
    loaded = EmotionClassifier.from_checkpoint(tmp_path / "student.ckpt")
    assert loaded._teachers == [] and loaded.hparams.teacher == [str(p) for p in pair]


def test_offline_distillation_labels_the_training_faces_once(pair, monkeypatch):
    model, data, trainer = _student([str(p) for p in pair], distill_temperature=2.0,
                                    distill_weight=0.6, distill_offline=True)
    calls = []
    original = EmotionClassifier.forward
    monkeypatch.setattr(EmotionClassifier, "forward",
                        lambda self, x: calls.append(self is model) or original(self, x))
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    # the teachers ran once each on the 16 training faces (one batch), then never again
    assert calls.count(False) == 2 and calls[:2] == [False, False] and all(calls[2:])
    assert model._teachers == [] and len(calls) > 2
    train = data.datasets["train"]
    assert isinstance(train, SoftTargetDataset)
    teachers = [load_model(p) for p in pair]
    faces, labels = train.images, train.labels
    x = normalize_batch(faces, 48)
    with torch.no_grad():
        soft = torch.stack([F.softmax(t(x) / 2.0, dim=1) for t in teachers]).mean(0).numpy()
    expected = 0.4 * np.eye(len(CLASSES))[labels] + 0.6 * soft
    np.testing.assert_allclose(train.targets, expected, atol=1e-5)
    assert data.class_counts("train") == np.bincount(labels, minlength=5).tolist()
    _, y = train[0]
    assert y.dtype == torch.float32 and y.shape == (5,)


def test_teachers_may_label_each_face_and_its_mirror(pair):
    """distill_flip: offline targets and the online loss's target average each teacher's
    tempered probabilities of the face and of its mirror image."""
    model, data, trainer = _student([str(p) for p in pair], distill_temperature=2.0,
                                    distill_weight=0.5, distill_offline=True, distill_flip=True)
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    train = data.datasets["train"]
    teachers = [load_model(p) for p in pair]
    x = normalize_batch(train.images, 48)

    def tempered(t, v):
        return F.softmax(t(v) / 2.0, dim=1)

    with torch.no_grad():
        plain = torch.stack([tempered(t, x) for t in teachers]).mean(0)
        soft = torch.stack([(tempered(t, x) + tempered(t, torch.flip(x, dims=[3]))) / 2
                            for t in teachers]).mean(0)
    assert not torch.allclose(plain, soft, atol=1e-3)  # the mirror changes what they say
    np.testing.assert_allclose(train.targets, 0.5 * np.eye(len(CLASSES))[train.labels]
                               + 0.5 * soft.numpy(), atol=1e-5)
    online = EmotionClassifier(CLASSES, arch="resnet18", distill_temperature=2.0,
                               distill_flip=True)
    online._teachers = teachers
    logits = torch.randn(len(x), len(CLASSES))
    kl = F.kl_div(F.log_softmax(logits / 2.0, dim=1), soft, reduction="batchmean")
    torch.testing.assert_close(online._distilled(torch.tensor(0.0), logits, x)[1], kl)


def test_offline_distillation_needs_the_dataloader_path(pair):
    model, data, trainer = _student([str(pair[0])], distill_offline=True)
    data.loader = "device"
    with one_torch_thread(), pytest.raises(ValueError, match="data.loader=workers"):
        trainer.fit(model, datamodule=data)


def test_a_teacher_of_more_classes_teaches_its_probabilities_of_the_students(pair):
    """A five-class teacher of a student of two of its classes, in another order: the soft
    labels are its tempered probabilities of those two, renormalised."""
    data = SyntheticDataModule(classes=["sad", "happy"], num_train=16, num_val=8, num_test=8,
                               batch_size=16, num_workers=0)
    model = EmotionClassifier(data.class_names, arch="resnet18", teacher=[str(pair[0])],
                              distill_temperature=2.0, distill_weight=0.5, distill_offline=True)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, accelerator="cpu")
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    train = data.datasets["train"]
    teacher = load_model(pair[0])
    with torch.no_grad():
        logits = teacher(normalize_batch(train.images, 48))
    tempered = F.softmax(logits / 2.0, dim=1)[:, [CLASSES.index("sad"), CLASSES.index("happy")]]
    soft = (tempered / tempered.sum(dim=1, keepdim=True)).numpy()
    np.testing.assert_allclose(train.targets, 0.5 * np.eye(2)[train.labels] + 0.5 * soft,
                               atol=1e-5)


def test_teachers_of_other_classes_and_bad_settings_are_refused(pair, tmp_path):
    data = SyntheticDataModule(classes=["happy", "sad"], num_train=8, num_val=8, num_test=8,
                               batch_size=8, num_workers=0)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, accelerator="cpu")
    with one_torch_thread():
        trainer.fit(EmotionClassifier(data.class_names, arch="resnet18"), datamodule=data)
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    student, data, trainer = _student([str(tmp_path / "two.ckpt")])
    with pytest.raises(ValueError, match=r"two\.ckpt: its student's classes .*\['angry', "
                                         r"'disgust', 'surprise'\] are not among them \(the "
                                         r"classes of this teacher are \['happy', 'sad'\]\): "
                                         r"a teacher must"):
        trainer.fit(student, datamodule=data)
    with pytest.raises(ValueError, match="distill_weight in"):
        EmotionClassifier(CLASSES, teacher=[str(pair[0])], distill_weight=0.0)
