"""TorchScript and ONNX export: parity with the PyTorch model, dynamic batch, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emotion_lightning.cli.export import export
from emotion_lightning.constants import GRAY_MEAN, GRAY_STD
from emotion_lightning.export import (
    export_classifier,
    export_metadata,
    export_onnx,
    probability_model,
)
from emotion_lightning.models import EmotionClassifier
from emotion_lightning.models.loading import load_classifier
from tests.conftest import CLASSES, compose_cfg

# torch 2.14 deprecates torch.jit; TorchScript files still load, which is what is tested
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")
onnx = pytest.importorskip("onnx", reason="ONNX export needs the [export] extra: pip install onnx")
onnxruntime = pytest.importorskip(
    "onnxruntime", reason="ONNX parity needs the [export] extra: pip install onnxruntime"
)


def inputs(batch: int, size: int = 48) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(batch))


def expected(classifier: EmotionClassifier, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return classifier.eval().predict_proba(x).numpy()


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    """Equal probabilities, relative to their size (a tiny model's are often near 0 or 1)."""
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7)


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"input": x.numpy()})[0]


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> dict[str, Path]:
    """The checkpoint exported once by ``emotion-export`` (which verifies parity itself)."""
    out = tmp_path_factory.mktemp("export")
    cfg = compose_cfg("export", [f"ckpt_path={checkpoint}", f"output_dir={out}", "name=emotion"],
                      out)
    return {fmt: Path(path) for fmt, path in export(cfg).items()}


def test_emotion_export_writes_both_formats_and_a_sidecar(exported):
    assert {k: p.name for k, p in exported.items()} == {
        "torchscript": "emotion.pt", "onnx": "emotion.onnx", "metadata": "emotion.json"}


def test_exports_match_pytorch_for_any_batch_size(checkpoint, exported):
    classifier = EmotionClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    scripted = torch.jit.load(str(exported["torchscript"]))
    for batch in (1, 5):
        x = inputs(batch)
        want = expected(classifier, x)
        assert want.shape == (batch, len(CLASSES))
        assert_same(scripted(x).detach().numpy(), want)
        assert_same(run_onnx(exported["onnx"], x), want)


def test_metadata_travels_with_every_file(exported):
    sidecar = json.loads(exported["metadata"].read_text())
    assert sidecar["class_names"] == CLASSES and sidecar["image_size"] == 48
    assert sidecar["input"]["shape"] == ["batch", 1, 48, 48]
    assert (sidecar["input"]["mean"], sidecar["input"]["std"]) == (GRAY_MEAN, GRAY_STD)
    model = onnx.load(str(exported["onnx"]))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["class_names"]) == CLASSES and json.loads(props["image_size"]) == 48
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    extra = {"metadata.json": ""}
    torch.jit.load(str(exported["torchscript"]), _extra_files=extra)
    assert json.loads(extra["metadata.json"]) == sidecar


@pytest.mark.parametrize("shift", [0, 2])
def test_test_time_views_are_baked_into_the_exports(checkpoint, tmp_path, shift):
    classifier = load_classifier(checkpoint, test_time_flip=True, test_time_shift=shift)
    metadata = export_metadata(classifier)
    assert metadata["test_time_flip"] is True and metadata["test_time_shift"] == shift
    exported = export_onnx(classifier, tmp_path / "m.onnx", metadata)  # torch.flip -> ONNX ops
    x = inputs(3)
    want = expected(classifier, x)
    with torch.no_grad():
        assert_same(probability_model(classifier)(x).numpy(), want)  # what TorchScript traces
    assert_same(run_onnx(exported, x), want)
    classifier.hparams.test_time_flip = False
    unflipped = expected(classifier, x)
    assert np.abs(np.log(unflipped) - np.log(want)).max() > 1e-2, "flip must change the output"


def test_export_refuses_overwrites_and_bad_input(checkpoint, exported, tmp_path):
    folder = exported["onnx"].parent
    with pytest.raises(FileExistsError, match="overwrite"):
        export_classifier(checkpoint, folder, formats=["onnx"], name="emotion")
    with pytest.raises(ValueError, match="formats"):
        export_classifier(checkpoint, tmp_path, formats=["tflite"])
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        export_classifier(tmp_path / "nope.ckpt", tmp_path)
