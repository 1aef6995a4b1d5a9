"""Draw faces, their top emotion and a per-class probability bar chart onto an image.

Line widths and fonts scale with the image, so the annotation reads the same on a
320-pixel thumbnail and a 4K frame. Charts go beside their face where they cover the
fewest other faces and charts; boxes and labels are drawn last, so they stay visible.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from emotion_lightning.detect.results import FaceEmotion

#: RGB colours given to the classes in order (Tableau 10).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (214, 39, 40),
    (44, 160, 44),
    (255, 187, 34),
    (31, 119, 180),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (23, 190, 207),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2


def class_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of the class at ``index``."""
    return PALETTE[index % len(PALETTE)]


def draw_faces(
    image: np.ndarray, faces: Sequence[FaceEmotion], class_names: Sequence[str], bars: bool = True
) -> np.ndarray:
    """A copy of the RGB ``image`` with every face boxed and labelled with its top emotion.

    ``bars`` adds a small chart of every class's probability beside each face.
    """
    out = np.ascontiguousarray(image.copy())
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2RGB)
    style = _Style(out.shape[:2])
    boxes: list[Rect] = [tuple(int(round(v)) for v in face.box) for face in faces]
    colours = [class_colour(_index(class_names, face.label)) for face in faces]
    texts = [f"{face.label} {face.confidence:.0%}" for face in faces]
    tags = [_tag(t, box[:2], out.shape[:2], style) for t, box in zip(texts, boxes, strict=True)]
    if bars and faces:
        chart = _Chart(class_names, style)
        # covering a face costs most, then a label, then another chart
        occupied = [(box, 4) for box in boxes] + [(tag, 2) for tag in tags]
        for face, box in zip(faces, boxes, strict=True):
            panel = chart.place(box, occupied, out.shape[:2])
            occupied.append((panel, 1))
            chart.draw(out, face, panel)
    for box, colour in zip(boxes, colours, strict=True):
        cv2.rectangle(out, box[:2], box[2:], colour, style.thickness, cv2.LINE_AA)
    for text, tag, colour in zip(texts, tags, colours, strict=True):
        cv2.rectangle(out, tag[:2], tag[2:], colour, -1)
        ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
        cv2.putText(out, text, (tag[0] + style.pad, tag[3] - style.pad - style.baseline), FONT,
                    style.font_scale, ink, style.font_thickness, cv2.LINE_AA)
    return out


def _index(class_names: Sequence[str], name: str) -> int:
    return list(class_names).index(name) if name in class_names else 0


class _Style:
    """Line width and font sizes for an image of ``shape`` (height, width)."""

    def __init__(self, shape: tuple[int, int]) -> None:
        unit = max(0.4, max(shape) / 1000.0)
        self.thickness = max(1, round(3 * unit))
        self.font_scale = 0.8 * unit
        self.font_thickness = max(1, round(2 * unit))
        self.small_scale = 0.6 * unit
        self.small_thickness = max(1, round(1.2 * unit))
        self.pad = max(2, round(4 * unit))
        (_, text_h), self.baseline = cv2.getTextSize("Ag", FONT, self.font_scale,
                                                     self.font_thickness)
        self.tag_height = text_h + self.baseline + 2 * self.pad


def _tag(text: str, corner: tuple[int, int], shape: tuple[int, int], style: _Style) -> Rect:
    """Where the label ``text`` goes: just above the box corner (inside it at the top edge)."""
    w = cv2.getTextSize(text, FONT, style.font_scale, style.font_thickness)[0][0] + 2 * style.pad
    h = style.tag_height
    x = min(max(corner[0], 0), max(0, shape[1] - w))
    y = corner[1] - h if corner[1] - h >= 0 else max(corner[1], 0)
    return (x, y, x + w, y + h)


class _Chart:
    """A panel with one row per class: name, probability bar, percentage."""

    def __init__(self, class_names: Sequence[str], style: _Style) -> None:
        self.class_names = list(class_names)
        self.style = style
        scale, thick, pad = style.small_scale, style.small_thickness, style.pad
        self.name_w = max(cv2.getTextSize(n, FONT, scale, thick)[0][0] for n in self.class_names)
        (pct_w, self.text_h), base = cv2.getTextSize("100%", FONT, scale, thick)
        self.row_h = self.text_h + base + pad
        self.bar_w = 4 * self.row_h
        self.width = self.name_w + self.bar_w + pct_w + 4 * pad
        self.height = self.row_h * len(self.class_names) + pad

    def place(self, box: Rect, occupied: list[tuple[Rect, int]], shape: tuple[int, int]) -> Rect:
        """The spot beside ``box`` covering the least weighted area of ``occupied``."""
        x1, y1, x2, y2 = box
        pad, w, h = self.style.pad, self.width, self.height
        height, width = shape
        candidates = []
        spots = ((x2 + pad, y1), (x1 - pad - w, y1), (x1, y2 + pad), (x2 + pad, y2 - h),
                 (x1 - pad - w, y2 - h), (x2 - w, y2 + pad))
        for x, y in spots:
            x = min(max(x, 0), max(0, width - w))
            y = min(max(y, 0), max(0, height - h))
            candidates.append((x, y, x + w, y + h))
        return min(candidates, key=lambda rect: sum(wt * _overlap(rect, o) for o, wt in occupied))

    def draw(self, out: np.ndarray, face: FaceEmotion, panel: Rect) -> None:
        scale, thick, pad = self.style.small_scale, self.style.small_thickness, self.style.pad
        x, y = panel[:2]
        region = out[y : panel[3], x : panel[2]]
        region[:] = (0.35 * region).astype(np.uint8)  # darkened: readable on any photo
        white = (255, 255, 255)
        for i, name in enumerate(self.class_names):
            p = face.probabilities.get(name, 0.0)
            top = y + pad + i * self.row_h
            baseline = top + self.text_h
            cv2.putText(out, name, (x + pad, baseline), FONT, scale, white, thick, cv2.LINE_AA)
            bar_x = x + 2 * pad + self.name_w
            cv2.rectangle(out, (bar_x, top), (bar_x + self.bar_w, baseline), (90, 90, 90), -1)
            fill = int(round(p * self.bar_w))
            if fill > 0:
                cv2.rectangle(out, (bar_x, top), (bar_x + fill, baseline), class_colour(i), -1)
            cv2.putText(out, f"{p:.0%}", (bar_x + self.bar_w + pad, baseline), FONT, scale, white,
                        thick, cv2.LINE_AA)


def _overlap(a: Rect, b: Rect) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
