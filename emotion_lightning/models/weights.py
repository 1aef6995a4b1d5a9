"""Loading pretrained weights: torchvision's ImageNet files or a local checkpoint, offline-safe."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from urllib.error import URLError

import torch
from torchvision.models import get_model_weights

NO_WEIGHTS = (None, "", "none", "None", "null")


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub caches (and looks for) the file behind ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's default ImageNet weights for ``arch``, from the hub cache or the network.

    Raises a RuntimeError that names the file to place, and where, when neither works.
    """
    weights = get_model_weights(arch).DEFAULT
    target = hub_checkpoint_path(weights.url)
    if target.is_file():
        return load_checkpoint_file(target)
    try:
        return weights.get_state_dict(progress=True)
    except (URLError, OSError, RuntimeError) as err:
        raise RuntimeError(
            f"ImageNet weights for {arch} are not cached and could not be downloaded ({err}).\n"
            f"Download {weights.url} on a machine with internet access and place it at\n"
            f"  {target}\n"
            "(or set TORCH_HOME to a folder holding checkpoints/<that file>), or pass a local "
            "file with weights=/path/to/file.pth."
        ) from err


class CheckpointError(ValueError):
    """A weights or checkpoint file that cannot be loaded safely; the message names the file."""


CONVERT_HINT = (
    "If you trust this file, convert it once to a plain state dict in a Python session:\n"
    "    import torch\n"
    "    blob = torch.load('{file}', weights_only=False)  # runs the file's code: trusted files only\n"
    "    state = blob['state_dict'] if isinstance(blob, dict) and 'state_dict' in blob else blob\n"
    "    torch.save({{k: v for k, v in state.items()}}, '{file}.state_dict.pth')\n"
    "and pass the new .pth file instead (see README, Security)."
)


def load_checkpoint_file(path: str | os.PathLike) -> dict:
    """The content of a ``.ckpt``/``.pth`` file, loaded with ``torch.load(weights_only=True)``.

    Every checkpoint or weights file the package reads goes through here: unpickling a file
    with ``weights_only=False`` can run arbitrary code, so it is never done. Raises
    :class:`FileNotFoundError` for a missing file and :class:`CheckpointError` (naming the
    file) for a file that is not a checkpoint or needs more than weights-only loading allows.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {file} does not exist")
    try:
        blob = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        if "Unsupported global" not in message and "not an allowed global" not in message:
            raise CheckpointError(
                f"not a checkpoint: {file} ({message.splitlines()[0] if message else 'unreadable'})"
            ) from None
        why = next((line.strip() for line in message.splitlines() if "Unsupported global" in line),
                   "an object weights-only loading does not allow")
        raise CheckpointError(
            f"refusing to load {file}: besides tensors it holds Python objects that loading "
            f"could run code from ({why.split('. Please use')[0]}); checkpoints are loaded "
            "weights-only. " + CONVERT_HINT.format(file=file)
        ) from None
    except Exception as err:  # EOFError, zip/pickle garbage, a text file, ...
        raise CheckpointError(
            f"not a checkpoint: {file} ({type(err).__name__}: {err}); pass a .ckpt written by "
            "emotion-train/emotion-distill or a .pth state dict"
        ) from None
    if not isinstance(blob, dict):
        raise CheckpointError(
            f"not a checkpoint: {file} holds a {type(blob).__name__}, not a state dict or a "
            "Lightning checkpoint"
        )
    return blob


def checkpoint_class_names(path: str | os.PathLike) -> list[str] | None:
    """The ``class_names`` an EmotionClassifier checkpoint records, else ``None``."""
    blob = load_checkpoint_file(path)
    names = (blob.get("hyper_parameters") or {}).get("class_names")
    return [str(n) for n in names] if names is not None else None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a plain ``.pth`` file or a Lightning checkpoint of this project.

    Lightning checkpoints have their ``state_dict`` keys stripped of the module prefix
    (``model.``, ``student.``) so they load into a bare backbone.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"weights file {file} does not exist; pass weights=imagenet, weights=null or the "
            "path of a .pth state dict or a .ckpt written by emotion-train/emotion-distill"
        )
    blob = load_checkpoint_file(file)
    if isinstance(blob, dict) and "state_dict" in blob:
        state = blob["state_dict"]
        for prefix in ("student.", "model.", "backbone.", "net."):
            if any(k.startswith(prefix) for k in state):
                return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        return dict(state)
    if isinstance(blob, dict) and all(isinstance(v, torch.Tensor) for v in blob.values()):
        return blob
    raise ValueError(f"{file} holds neither a state dict nor a Lightning checkpoint")


def resolve_pretrained(arch: str, weights: str | None) -> dict[str, torch.Tensor] | None:
    """``None`` for no weights, torchvision's for ``imagenet``, else a local file's."""
    if weights in NO_WEIGHTS:
        return None
    if weights == "imagenet":
        return imagenet_state_dict(arch)
    return load_state_dict_file(weights)
