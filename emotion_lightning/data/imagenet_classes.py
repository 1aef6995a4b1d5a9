"""ImageNet-1k class names (offline, from torchvision's metadata) as image-search queries.

A few images per ImageNet class make a good unlabelled set for conv1 distillation when
ImageNet itself is not at hand::

    python -m emotion_lightning.data.imagenet_classes data/imagenet_queries.txt

writes one query per line (the 1000 class names, each distinct in torchvision's list) for the
scrape tool to fetch ~10 images each into a folder that ``GrayDistillDataModule`` reads.
"""

from __future__ import annotations

import sys
from pathlib import Path

from torchvision.models import get_model_weights


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k category names in label order (no network needed)."""
    return list(get_model_weights("resnet50").DEFAULT.meta["categories"])


def write_class_queries(path: str | Path, template: str = "{name}") -> int:
    """Write one search query per class (``template`` formats ``name``) to ``path``; returns
    the number of queries."""
    queries = [template.format(name=name) for name in imagenet_class_names()]
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(queries) + "\n", encoding="utf-8")
    return len(queries)


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "imagenet_queries.txt"
    print(f"wrote {write_class_queries(target)} queries to {target}")
