"""Emotion names and normalisation statistics shared by every data path."""

from __future__ import annotations

from collections.abc import Sequence

#: The seven FER2013 emotions in the order of the Kaggle CSV's integer labels.
FER_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: The recipe's five classes.
DEFAULT_CLASSES: tuple[str, ...] = ("angry", "disgust", "happy", "sad", "surprise")

#: Spellings met in folder names and scrapes, mapped to the canonical names above.
EMOTION_ALIASES: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "contempt": "contempt",
}

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: ITU-R BT.601 luma weights (R, G, B).
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

#: Gray statistics: the luma of ImageNet's channel statistics, so a gray model sees inputs
#: on the same scale as the RGB model it was distilled from.
GRAY_MEAN: float = sum(w * m for w, m in zip(LUMA_WEIGHTS, IMAGENET_MEAN))
GRAY_STD: float = sum(w * s for w, s in zip(LUMA_WEIGHTS, IMAGENET_STD))


def canonical_emotion(name: str) -> str:
    """Lower-case an emotion name and map known aliases to the canonical spelling."""
    key = name.strip().lower()
    return EMOTION_ALIASES.get(key, key)


def class_positions(classes: Sequence[str], among: Sequence[str], what: str, of: str,
                    at_least: int = 1) -> list[int]:
    """The position in ``among`` of each of ``classes`` (canonical names compared), in the
    order of ``classes``. A name not among them, a name given twice, or fewer than
    ``at_least`` names is refused with one message naming ``what`` was asked (e.g.
    ``"score_classes"``), the names at fault and the classes ``of`` whom (``"the
    checkpoint"``) there are."""
    wanted = [canonical_emotion(str(c)) for c in classes]
    known = [canonical_emotion(str(c)) for c in among]
    unknown = [c for c in wanted if c not in known]
    repeated = sorted({c for c in wanted if wanted.count(c) > 1})
    problem = (f"{unknown} are not among them" if unknown else
               f"{repeated} named more than once" if repeated else
               f"fewer than {at_least} classes" if len(wanted) < at_least else "")
    if problem:
        raise ValueError(f"{what} {list(classes)}: {problem} (the classes of {of} are {known})")
    return [known.index(c) for c in wanted]
