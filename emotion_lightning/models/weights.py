"""Loading pretrained weights: torchvision's ImageNet files or a local checkpoint, offline-safe."""

from __future__ import annotations

import os
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
        return torch.load(target, map_location="cpu", weights_only=True)
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
    blob = torch.load(file, map_location="cpu", weights_only=False)
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
