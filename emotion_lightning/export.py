"""Export a trained classifier to TorchScript and ONNX, with a sidecar JSON describing its input.

Both files take ``[N, 1, S, S]`` float32 gray faces normalised as in training
(``(pixel / 255 - mean) / std``) and return ``[N, C]`` class probabilities (softmax; averaged
over the mirrored, shifted or cropped faces when the checkpoint uses test-time views, as
``predict_proba`` does; averaged over the members for an ensemble of checkpoints; divided by
the training prior when the model has a prior correction). The batch axis is dynamic.
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
from emotion_lightning.models.classifier import EmotionClassifier
from emotion_lightning.models.ensemble import ClassifierEnsemble
from emotion_lightning.models.loading import load_model
from emotion_lightning.models.test_time import average_probabilities, resized

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class ProbabilityModel(nn.Module):
    """``[N, 1, S, S]`` normalised gray faces -> ``[N, C]`` probabilities."""

    def __init__(self, net: nn.Module, test_time_flip: bool = False, test_time_shift: int = 0,
                 test_time_crop: int = 0, image_size: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.test_time_flip = test_time_flip
        self.test_time_shift = test_time_shift
        self.test_time_crop = test_time_crop
        self.image_size = image_size  # inputs are resized to it when given (ensemble members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.image_size is not None:
            x = resized(x, self.image_size)
        return average_probabilities(self.net, x, self.test_time_flip, self.test_time_shift,
                                     self.test_time_crop)


class MeanProbabilities(nn.Module):
    """The average of several probability models' outputs (an exported ensemble)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


class PriorCorrected(nn.Module):
    """A probability model's outputs times ``weights`` (the training prior to the power
    ``-prior_tau``), renormalised: the prior correction of ``predict_proba``."""

    def __init__(self, model: nn.Module, weights: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("weights", weights.detach().float().cpu().reshape(1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weighted = self.model(x) * self.weights
        return weighted / weighted.sum(dim=1, keepdim=True)


def probability_model(model: EmotionClassifier | ClassifierEnsemble) -> nn.Module:
    """A CPU copy of the network(s) with softmax averaged over the test-time views (and the
    members of an ensemble) and prior-corrected, in eval mode: the probabilities of
    ``model.predict_proba``."""
    if isinstance(model, ClassifierEnsemble):
        size = int(model.hparams.image_size)
        out = MeanProbabilities([_single(m, None if int(m.hparams.image_size) == size
                                         else int(m.hparams.image_size))
                                 for m in model.members])
    else:
        out = _single(model, None)
    if model.prior_tau:
        out = PriorCorrected(out, torch.exp(-model.prior_tau * model.log_prior))
    return out.eval()


def _single(classifier: EmotionClassifier, image_size: int | None) -> ProbabilityModel:
    net = copy.deepcopy(classifier.net).to("cpu", memory_format=torch.contiguous_format)
    hparams = classifier.hparams
    return ProbabilityModel(net, bool(hparams.test_time_flip), int(hparams.get("test_time_shift", 0)),
                            int(hparams.get("test_time_crop", 0)), image_size).eval()


def export_metadata(classifier: EmotionClassifier | ClassifierEnsemble,
                    source: str | list[str] | None = None) -> dict:
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
        **_views(classifier),
        "prior_tau": classifier.prior_tau,
        "training_prior": [round(float(p), 6) for p in classifier.log_prior.exp()],
        "arch": classifier.hparams.arch,
        "source_checkpoint": source,
    }


def _views(model: EmotionClassifier | ClassifierEnsemble) -> dict:
    """The test-time views of a classifier, or of each member of an ensemble."""
    if isinstance(model, ClassifierEnsemble):
        return {"ensemble_of": len(model.members),
                "members": [_views(member) | {"arch": member.hparams.arch,
                                              "image_size": int(member.hparams.image_size)}
                            for member in model.members]}
    return {"test_time_flip": bool(model.hparams.test_time_flip),
            "test_time_shift": int(model.hparams.get("test_time_shift", 0)),
            "test_time_crop": int(model.hparams.get("test_time_crop", 0))}


def export_torchscript(classifier: EmotionClassifier | ClassifierEnsemble, path: str | Path, metadata: dict) -> Path:
    """Trace the probability model to ``path``, with ``metadata`` as extra file ``metadata.json``.

    ``torch.jit`` is deprecated upstream in favour of ``torch.export``; the traced file still
    loads with ``torch.jit.load`` and in C++ LibTorch, which is what TorchScript is for.
    """
    path = Path(path)
    model = probability_model(classifier)
    example = _example_input(metadata["image_size"], batch=2)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
        # the input side is fixed (metadata), so shape tests tracing as constants are right
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # check_trace re-runs the model twice; parity is checked after export instead
        traced = torch.jit.trace(model, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"metadata.json": json.dumps(metadata)})
    write_file(path, buffer.getvalue())
    return path


def export_onnx(
    classifier: EmotionClassifier | ClassifierEnsemble, path: str | Path, metadata: dict,
    opset: int = 17,
) -> Path:
    """Export the probability model to ONNX (dynamic batch) with ``metadata`` in metadata_props."""
    import onnx  # the optional [export] dependencies

    path = Path(path)
    model = probability_model(classifier)
    example = _example_input(metadata["image_size"], batch=2)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # as above
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
    ckpt_path: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    formats: Sequence[str] = tuple(FORMATS),
    name: str | None = None,
    opset: int = 17,
    overwrite: bool = False,
    prior_tau: float | None = None,
) -> dict[str, Path]:
    """Export a checkpoint, or the ensemble of a list of them, to
    ``output_dir/<name>{.pt,.onnx}`` plus ``<name>.json``.

    ``name`` defaults to the checkpoint's stem (``<first stem>_ensemble<n>`` for a list).
    Returns the written paths by format (and ``"metadata"``). Refuses to replace existing
    files unless ``overwrite``. ``prior_tau`` overrides the checkpoints' prior correction.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(
            f"formats must be a non-empty subset of {sorted(FORMATS)}, got {list(formats)}"
        )
    many = not isinstance(ckpt_path, (str, Path))
    ckpts = [Path(p).expanduser() for p in (ckpt_path if many else [ckpt_path])]
    if name is not None:
        check_file_stem(name)
    model = load_model(ckpts if many else ckpts[0], prior_tau=prior_tau)
    output_dir = Path(output_dir)
    name = name or (f"{ckpts[0].stem}_ensemble{len(ckpts)}" if len(ckpts) > 1 else ckpts[0].stem)
    planned = {fmt: output_dir / f"{name}{FORMATS[fmt]}" for fmt in formats}
    planned["metadata"] = output_dir / f"{name}.json"
    existing = [str(p) for p in planned.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing} already exist; pass overwrite=true or another name")
    _require_writable(output_dir)
    sources = [str(p.resolve()) for p in ckpts]
    metadata = export_metadata(model, sources if many else sources[0])
    if "torchscript" in planned:
        export_torchscript(model, planned["torchscript"], metadata)
    if "onnx" in planned:
        export_onnx(model, planned["onnx"], metadata, opset)
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
    classifier: EmotionClassifier | ClassifierEnsemble, exported: dict[str, Path], batch: int = 3
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
