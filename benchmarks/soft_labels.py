"""How much teachers' soft labels say beyond the labels: on the faces each teacher learnt, on
training faces it never saw (its cross-fit fold) and on validation faces.

    python benchmarks/soft_labels.py --teacher A.ckpt B.ckpt [--data ../shared/data/fer2013]
        [--temperature 2] [--limit 6000] [--flip] [--out PATH]

Offline distillation trains a student on ``(1 - w) * one-hot + w *`` the teachers' softened
probabilities of the training faces. A teacher that has fitted those faces mostly repeats
their labels; one cross-fitted without a fold (``data.cross_fit_fold``) labels that fold as
it labels faces it never saw. For each teacher, and for the targets the student would get
(:func:`~emotion_lightning.models.distillation.distillation_targets` at weight 1: the
teachers' mean, or each fold from the teachers that left it out), per face set: top-1
agreement with the labels, the mean probability of the label at ``--temperature`` and at 1,
the mean entropy; ``--flip`` averages each face's soft labels with its mirror image's
(``model.distill_flip``). FER2013 with
the recipes' validation split (``--seed``, 10% of Training); ``--limit`` takes a seeded
subset of the training faces. Prints a table and writes JSON (default
``benchmarks/results/soft_labels.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from emotion_lightning.data.cross_fit import CrossFit, face_folds
from emotion_lightning.data.fer import FERDataModule
from emotion_lightning.models import EmotionClassifier
from emotion_lightning.models.distillation import distillation_targets, soft_labels
from emotion_lightning.models.weights import load_checkpoint_file
from emotion_lightning.records import write_json
from emotion_lightning.runtime import auto_precision, configure_threads, machine_record

REPO = Path(__file__).resolve().parents[1]


def agreement(probs: dict[float, np.ndarray], labels: np.ndarray) -> dict:
    """Top-1 agreement with ``labels``, mean probability of the label (per temperature) and
    mean entropy (at the first temperature) of soft labels ``probs`` (``{T: [N, C]}``)."""
    first = next(iter(probs.values()))
    rows = np.arange(len(labels))
    return {"faces": int(len(labels)),
            "agreement": round(float((first.argmax(1) == labels).mean()), 4),
            **{f"p_label_T{t:g}": round(float(p[rows, labels].mean()), 4)
               for t, p in probs.items()},
            "entropy": round(float(-(first * np.log(first + 1e-12)).sum(1).mean()), 4)}


def measure(teachers: list[EmotionClassifier], cross_fits: list[CrossFit | None],
            names: list[str], train: tuple[np.ndarray, np.ndarray],
            val: tuple[np.ndarray, np.ndarray], temperatures: list[float], context,
            flip: bool = False) -> list[dict]:
    """One record per (source, face set): each teacher on the training faces it saw, those it
    did not (cross-fitted teachers) and validation; the teachers' mean on validation; the
    student's targets on the training faces (where the teachers label every one)."""
    faces, labels = train

    def probs(members, images):
        return {t: soft_labels([teachers[i] for i in members], images, t, torch.device("cpu"),
                               context, progress=False, flip=flip) for t in temperatures}

    records = []
    for i, (name, cf) in enumerate(zip(names, cross_fits)):
        unseen = (face_folds(faces, cf.folds, cf.seed) == cf.fold if cf
                  else np.zeros(len(faces), bool))
        for label, mask in (("training faces it learnt", ~unseen),
                            ("training faces it never saw (its fold)", unseen)):
            if mask.any():
                records.append({"source": name, "faces_set": label,
                                **agreement(probs([i], faces[mask]), labels[mask])})
        records.append({"source": name, "faces_set": "validation",
                        **agreement(probs([i], val[0]), val[1])})
    records.append({"source": "the teachers' mean", "faces_set": "validation",
                    **agreement(probs(range(len(teachers)), val[0]), val[1])})
    try:  # the targets offline distillation builds, with the labels' share set to 0
        student = {t: distillation_targets(teachers, faces, labels, t, 1.0, torch.device("cpu"),
                                           context, progress=False, cross_fits=cross_fits,
                                           flip=flip)
                   for t in temperatures}
    except ValueError as err:  # cross-fitted teachers that leave a fold unlabelled
        print(f"no student targets: {err}")
        return records
    out_of_fold = any(cross_fits)
    records.append({"source": "the student's targets" + (" (out of fold)" if out_of_fold else ""),
                    "faces_set": "training faces", **agreement(student, labels)})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", nargs="+", required=True, help="classifier checkpoints")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=42, help="the validation split's seed")
    parser.add_argument("--limit", type=int, default=0, help="training faces (0: all)")
    parser.add_argument("--flip", action="store_true",
                        help="average each face's soft labels with its mirror image's")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/soft_labels.json")
    args = parser.parse_args()

    threads = configure_threads(0)
    bf16 = auto_precision("cpu")[0] == "bf16-mixed"
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    checkpoints = [load_checkpoint_file(p) for p in args.teacher]
    teachers = [EmotionClassifier.from_checkpoint_content(c) for c in checkpoints]
    cross_fits = [CrossFit.from_checkpoint(c) for c in checkpoints]
    data = FERDataModule(args.data, classes=teachers[0].class_names, seed=args.seed,
                         cache_dir=None)
    data.setup("fit")
    faces, labels = data.train_faces()
    if args.limit and args.limit < len(faces):
        keep = np.sort(np.random.default_rng(0).choice(len(faces), args.limit, replace=False))
        faces, labels = faces[keep], labels[keep]
    val = data.datasets["val"]
    start = time.perf_counter()
    temperatures = list(dict.fromkeys([args.temperature, 1.0]))
    records = measure(teachers, cross_fits, [str(p) for p in args.teacher],
                      (faces, labels), (val.images, val.labels), temperatures, context, args.flip)
    result = {"teachers": [str(p) for p in args.teacher],
              "cross_fits": [cf.as_dict() if cf else None for cf in cross_fits],
              "temperature": args.temperature, "flip": args.flip, "data": str(args.data), "seed": args.seed,
              "training_faces": int(len(faces)), "records": records,
              "seconds": round(time.perf_counter() - start, 1), "threads": threads,
              "precision": "bf16-mixed" if bf16 else "32-true", **machine_record()}
    for r in records:
        print(f"{r['source']:<50} {r['faces_set']:<40} {r['faces']:>6} agree {r['agreement']:.3f} "
              f"p(label) {r[f'p_label_T{args.temperature:g}']:.3f} entropy {r['entropy']:.3f}")
    write_json(result, args.out)
    print(json.dumps({"out": str(args.out), "seconds": result["seconds"]}))


if __name__ == "__main__":
    main()
