"""Export a trained classifier to TorchScript and ONNX, with a sidecar JSON describing its input.

Both files take ``[N, 1, S, S]`` float32 gray faces normalised as in training
(``(pixel / 255 - mean) / std``) and return ``[N, C]`` class probabilities (softmax; averaged
over the mirrored and shifted faces when the checkpoint uses test-time views, as
``predict_proba`` does). The batch axis is dynamic.
``<name>.json`` (and the ONNX file's ``metadata_props``) holds the class names, input size
and normalisation, so the files can be used without this package.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emotion_lightning.constants import GRAY_MEAN, GRAY_STD, LUMA_WEIGHTS
from emotion_lightning.models.classifier import EmotionClassifier, load_classifier
from emotion_lightning.models.test_time import average_probabilities

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class ProbabilityModel(nn.Module):
    """``[N, 1, S, S]`` normalised gray faces -> ``[N, C]`` probabilities."""

    def __init__(self, net: nn.Module, test_time_flip: bool = False, test_time_shift: int = 0) -> None:
        super().__init__()
        self.net = net
        self.test_time_flip = test_time_flip
        self.test_time_shift = test_time_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return average_probabilities(self.net, x, self.test_time_flip, self.test_time_shift)


def probability_model(classifier: EmotionClassifier) -> ProbabilityModel:
    """A CPU copy of the classifier's network with softmax averaged over its test-time views,
    in eval mode: the probabilities of :meth:`EmotionClassifier.predict_proba`."""
    net = copy.deepcopy(classifier.net).to("cpu", memory_format=torch.contiguous_format)
    hparams = classifier.hparams
    return ProbabilityModel(net, bool(hparams.test_time_flip),
                            int(hparams.get("test_time_shift", 0))).eval()


def export_metadata(classifier: EmotionClassifier, source: str | None = None) -> dict:
    """What a user of the exported files needs: classes, input size and normalisation."""
    size = int(classifier.hparams.image_size)
    return {
        "class_names": classifier.class_names,
        "image_size": size,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 1, size, size],
            "dtype": "float32",
            "colour": "gray: ITU-R BT.601 luma of RGB",
            "luma_weights": list(LUMA_WEIGHTS),
            "normalization": "(pixel / 255 - mean) / std",
            "mean": GRAY_MEAN,
            "std": GRAY_STD,
            "face_crop": "square around the face box, resized to image_size",
        },
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(classifier.class_names)],
                   "meaning": "class probabilities (softmax), in class_names order"},
        "test_time_flip": bool(classifier.hparams.test_time_flip),
        "test_time_shift": int(classifier.hparams.get("test_time_shift", 0)),
        "arch": classifier.hparams.arch,
        "source_checkpoint": source,
    }


def export_torchscript(classifier: EmotionClassifier, path: str | Path, metadata: dict) -> Path:
    """Trace the probability model to ``path``, with ``metadata`` as extra file ``metadata.json``.

    ``torch.jit`` is deprecated upstream in favour of ``torch.export``; the traced file still
    loads with ``torch.jit.load`` and in C++ LibTorch, which is what TorchScript is for.
    """
    path = Path(path)
    model = probability_model(classifier)
    example = _example_input(metadata["image_size"], batch=2)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
        # check_trace re-runs the model twice; parity is checked after export instead
        traced = torch.jit.trace(model, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"metadata.json": json.dumps(metadata)})
    write_file(path, buffer.getvalue())
    return path


def export_onnx(
    classifier: EmotionClassifier, path: str | Path, metadata: dict, opset: int = 17
) -> Path:
    """Export the probability model to ONNX (dynamic batch) with ``metadata`` in metadata_props."""
    import onnx  # the optional [export] dependencies

    path = Path(path)
    model = probability_model(classifier)
    example = _example_input(metadata["image_size"], batch=2)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model, (example,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset, dynamo=False,  # the dynamo exporter needs onnxscript
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(proto)
    write_file(path, proto.SerializeToString())
    return path


def export_classifier(
    ckpt_path: str | Path,
    output_dir: str | Path,
    formats: Sequence[str] = tuple(FORMATS),
    name: str | None = None,
    opset: int = 17,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Export a checkpoint to ``output_dir/<name>{.pt,.onnx}`` plus ``<name>.json``.

    ``name`` defaults to the checkpoint's stem. Returns the written paths by format
    (and ``"metadata"``). Refuses to replace existing files unless ``overwrite``.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(
            f"formats must be a non-empty subset of {sorted(FORMATS)}, got {list(formats)}"
        )
    ckpt_path = Path(ckpt_path).expanduser()
    if name is not None:
        check_file_stem(name)
    classifier = load_classifier(ckpt_path)
    output_dir = Path(output_dir)
    name = name or ckpt_path.stem
    planned = {fmt: output_dir / f"{name}{FORMATS[fmt]}" for fmt in formats}
    planned["metadata"] = output_dir / f"{name}.json"
    existing = [str(p) for p in planned.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing} already exist; pass overwrite=true or another name")
    _require_writable(output_dir)
    metadata = export_metadata(classifier, str(ckpt_path.resolve()))
    if "torchscript" in planned:
        export_torchscript(classifier, planned["torchscript"], metadata)
    if "onnx" in planned:
        export_onnx(classifier, planned["onnx"], metadata, opset)
    write_file(planned["metadata"], json.dumps(metadata, indent=2).encode())
    return planned


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` through a temporary file renamed into place: a full disk or a crash
    leaves no half-written model; a failure names the file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise OSError(error.errno, f"cannot write {path} ({error.strerror or error}); free space "
                      "there or choose another output_dir") from None


def check_file_stem(name: str) -> None:
    """``name`` is a file name without suffix: no folder separators, not ``.``/``..``."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or os.sep in name or (os.altsep and os.altsep in name)):
        raise ValueError(f"name={name!r} must be a plain file name (no folders, '/', '\\' or "
                         "'..'); choose the folder with output_dir")


def _require_writable(output_dir: Path) -> None:
    """Create ``output_dir`` and check a file can be written there, naming it if not."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise PermissionError(
            error.errno, f"cannot write to output_dir {output_dir} ({error.strerror or error}); "
            "choose a writable folder with output_dir=..."
        ) from None


def max_abs_difference(
    classifier: EmotionClassifier, exported: dict[str, Path], batch: int = 3
) -> dict[str, float]:
    """Largest probability difference between each exported file and ``predict_proba``."""
    x = _example_input(int(classifier.hparams.image_size), batch)
    with torch.no_grad():
        expected = classifier.to("cpu").eval().predict_proba(x).numpy()
    out = {}
    if "torchscript" in exported:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
            scripted = torch.jit.load(str(exported["torchscript"]))
        with torch.no_grad():
            out["torchscript"] = float(np.abs(scripted(x).numpy() - expected).max())
    if "onnx" in exported:
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(exported["onnx"]), providers=["CPUExecutionProvider"]
        )
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        out["onnx"] = float(np.abs(got - expected).max())
    return out


def _example_input(size: int, batch: int) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(0))
