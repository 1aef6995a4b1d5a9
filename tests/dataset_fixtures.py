"""Small copies of the public expression datasets in their official layouts (real file names,
real label-file formats), written by the tests. Each image's brightness encodes its label
(``label_shade``), so a test can tell a face read under the wrong label."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def label_shade(label: int) -> int:
    """The mean gray value of a fixture face of dataset label ``label``."""
    return 30 + 20 * int(label)


def face(label: int, rng: np.random.Generator, size: int = 100) -> np.ndarray:
    """A ``size x size`` gray image around ``label_shade(label)`` with a little noise (no two equal)."""
    noise = rng.integers(-6, 7, (size, size))
    return np.clip(label_shade(label) + noise, 0, 255).astype(np.uint8)


def shade_of(image: np.ndarray) -> float:
    return float(np.asarray(image, np.float64).mean())


def write_rafdb(root: Path, per_label: int = 6, seed: int = 0) -> Path:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` and ``Image/aligned/*_aligned.jpg``;
    ``per_label`` train and ``per_label // 2`` test images of each label 1-7."""
    rng = np.random.default_rng(seed)
    (root / "EmoLabel").mkdir(parents=True)
    aligned = root / "Image" / "aligned"
    aligned.mkdir(parents=True)
    lines, counters = [], {"train": 0, "test": 0}
    for label in range(1, 8):
        for split, count in (("train", per_label), ("test", per_label // 2)):
            for _ in range(count):
                counters[split] += 1
                name = f"{split}_{counters[split]:05d}"
                cv2.imwrite(str(aligned / f"{name}_aligned.jpg"), face(label, rng))
                lines.append(f"{name}.jpg {label}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


#: Rows of the FER+ fixture that the FER+ protocol drops, by what is odd about their votes.
FERPLUS_ODD_VOTES = {
    "tie": [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
    "unknown": [0, 3, 0, 0, 0, 0, 0, 0, 7, 0],
    "not_a_face": [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
}


def ferplus_votes(label: int) -> list[int]:
    """Ten votes with a clear majority (6) for FER+ column ``label``, 3 for the next emotion."""
    votes = [0] * 10
    votes[label], votes[(label + 1) % 8], votes[8] = 6, 3, 1
    return votes


def write_ferplus(root: Path, seed: int = 0) -> Path:
    """FER+: ``fer2013new.csv`` (ten votes per row) and the matching ``fer2013.csv`` (48x48
    pixels, row i = row i) in ``root``. Each of the eight emotions has 4 Training, 2
    PublicTest and 2 PrivateTest rows with a clear majority (its faces shaded by the FER+
    column index); Training also holds one row of each of FERPLUS_ODD_VOTES (shade 250)."""
    import csv

    rng = np.random.default_rng(seed)
    rows = [(usage, ferplus_votes(label), label_shade(label))
            for label in range(8)
            for usage in ["Training"] * 4 + ["PublicTest"] * 2 + ["PrivateTest"] * 2]
    rows += [("Training", votes, 250) for votes in FERPLUS_ODD_VOTES.values()]
    root.mkdir(parents=True, exist_ok=True)
    with (root / "fer2013.csv").open("w", newline="") as f, \
            (root / "fer2013new.csv").open("w", newline="") as g:
        pixels, votes_out = csv.writer(f), csv.writer(g)
        pixels.writerow(["emotion", "pixels", "Usage"])
        votes_out.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness",
                            "anger", "disgust", "fear", "contempt", "unknown", "NF"])
        for i, (usage, votes, shade) in enumerate(rows):
            image = np.clip(shade + rng.integers(-6, 7, (48, 48)), 0, 255)
            pixels.writerow([0, " ".join(map(str, image.ravel())), usage])
            votes_out.writerow([usage, f"fer{i:07d}.png", *votes])
    return root


AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                    "expression,valence,arousal")


def boxed_photo(label: int, box: tuple[int, int, int, int], rng: np.random.Generator,
                shape: tuple[int, int] = (120, 140)) -> np.ndarray:
    """A gray photo, black (value 0) but for the face ``box`` (left, top, width, height) shaded
    ``label_shade(label)``: a crop that is not exactly the box shows in its mean."""
    photo = np.zeros(shape, np.uint8)
    x, y, w, h = box
    photo[y:y + h, x:x + w] = face(label, rng, size=max(w, h))[:h, :w]
    return photo


def affectnet_row(rel: str, box: tuple[int, int, int, int], expression: int, rng) -> str:
    landmarks = ";".join(f"{v:.2f}" for v in rng.uniform(0, 100, 136))
    valence, arousal = (-2, -2) if expression > 7 else rng.uniform(-1, 1, 2).round(4)
    return f'{rel},{box[0]},{box[1]},{box[2]},{box[3]},"{landmarks}",{expression},{valence},{arousal}'


def write_affectnet(root: Path, train_per_label: int = 5, test_per_label: int = 2,
                    seed: int = 0) -> Path:
    """AffectNet: ``Manually_Annotated_Images/<dir>/<sha1>.jpg`` photos with one boxed face and
    ``training.csv`` / ``validation.csv`` (the official columns, quoted landmarks) listing
    them: each expression 0-7 ``train_per_label`` / ``test_per_label`` times, and one row of
    each of expressions 8, 9, 10 in training.csv."""
    import hashlib

    rng = np.random.default_rng(seed)
    images = root / "Manually_Annotated_Images"
    counter = 0
    for name, per_label in (("training.csv", train_per_label), ("validation.csv", test_per_label)):
        rows = [AFFECTNET_HEADER]
        labels = [e for e in range(8) for _ in range(per_label)]
        labels += list(range(8, 11)) if name == "training.csv" else []
        for expression in labels:
            counter += 1
            folder = images / str(counter % 3 + 1)
            folder.mkdir(parents=True, exist_ok=True)
            rel = f"{folder.name}/{hashlib.sha1(str(counter).encode()).hexdigest()}.jpg"
            box = (int(rng.integers(5, 40)), int(rng.integers(5, 30)), 64, 64)
            cv2.imwrite(str(images / rel), boxed_photo(min(expression, 7), box, rng))
            rows.append(affectnet_row(rel, box, expression, rng))
        (root / name).write_text("\n".join(rows) + "\n")
    return root


def ck_label(subject: int, sequence: int) -> int:
    """The CK+ emotion (1-7) of the fixture's sequence ``sequence`` of subject ``subject``."""
    return 1 + (2 * subject + sequence) % 7


def write_ckplus(root: Path, subjects: int = 6, sequences: int = 2, frames: int = 5,
                 seed: int = 0) -> Path:
    """CK+ sequence layout: ``cohn-kanade-images/S0xx/00y/S0xx_00y_0000000f.png`` photos (face
    box shaded neutral for the first two frames, then by the emotion), ``Landmarks/...`` (68
    points inside the box; the box is their bounds) and ``Emotion/.../*_emotion.txt`` on the
    last frame of each sequence (``ck_label``)."""
    rng = np.random.default_rng(seed)
    for s in range(subjects):
        subject = f"S{5 * (s + 1):03d}"
        for q in range(sequences):
            sequence = f"{q + 1:03d}"
            label = ck_label(s, q)
            for folder in ("cohn-kanade-images", "Landmarks", "Emotion"):
                (root / folder / subject / sequence).mkdir(parents=True, exist_ok=True)
            for f in range(1, frames + 1):
                stem = f"{subject}_{sequence}_{f:08d}"
                box = (int(rng.integers(10, 50)), int(rng.integers(10, 40)), 60, 60)
                shade_label = label if f > 2 else 0
                cv2.imwrite(str(root / "cohn-kanade-images" / subject / sequence / f"{stem}.png"),
                            boxed_photo(shade_label, box, rng))
                x, y, w, h = box
                points = np.column_stack([rng.uniform(x, x + w - 1, 68), rng.uniform(y, y + h - 1, 68)])
                points[:2] = [[x, y], [x + w, y + h]]
                (root / "Landmarks" / subject / sequence / f"{stem}_landmarks.txt").write_text(
                    "".join(f"   {px:.7e}   {py:.7e}\n" for px, py in points))
            (root / "Emotion" / subject / sequence / f"{stem}_emotion.txt").write_text(
                f"   {label:.7e}\n")
    return root


CK48_FOLDERS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


def write_ck48(root: Path, subjects: int = 6, per_subject: int = 3, seed: int = 0) -> Path:
    """The CK+48 copy: ``<emotion>/S0xx_00y_0000000f.png`` 48x48 faces, ``per_subject`` frames
    of each emotion folder per subject (shaded by the CK+ label)."""
    from emotion_lightning.constants import canonical_emotion
    from emotion_lightning.data.ckplus import CKPLUS_CLASSES

    rng = np.random.default_rng(seed)
    for folder in CK48_FOLDERS:
        label = CKPLUS_CLASSES.index(canonical_emotion(folder))
        (root / folder).mkdir(parents=True)
        for s in range(subjects):
            for f in range(per_subject):
                cv2.imwrite(str(root / folder / f"S{5 * (s + 1):03d}_{label:03d}_{f + 9:08d}.png"),
                            face(label, rng, size=48))
    return root


def write_expw(root: Path, photos: int = 30, seed: int = 0) -> Path:
    """ExpW: ``image/origin/<name>.jpg`` photos with one or two boxed faces (shaded by label,
    FER order) and ``label/label.lst`` (``image_name face_id top left right bottom confidence
    label``). Photo ``k`` shows label ``k % 7``; every third photo has a second face of label
    ``(k + 3) % 7`` to its right."""
    rng = np.random.default_rng(seed)
    (root / "image" / "origin").mkdir(parents=True)
    (root / "label").mkdir(parents=True)
    lines = []
    for k in range(photos):
        name = f"{('angry', 'happy', 'sad')[k % 3]}_people_{k}.jpg"
        photo = np.zeros((100, 180), np.uint8)
        faces = [(k % 7, 10)] + ([((k + 3) % 7, 100)] if k % 3 == 0 else [])
        for face_id, (label, left) in enumerate(faces):
            top, side = int(rng.integers(5, 30)), 60
            photo[top:top + side, left:left + side] = face(label, rng, size=side)
            lines.append(f"{name} {face_id} {top} {left} {left + side} {top + side} "
                         f"{rng.uniform(20, 90):.10f} {label}")
        cv2.imwrite(str(root / "image" / "origin" / name), photo)
    (root / "label" / "label.lst").write_text("\n".join(lines) + "\n")
    return root
