"""What an annotation run did: one report per input, and the run's (``summary.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from emotion_lightning.detect.sources import Skipped


@dataclass
class SourceReport:
    """What was done with one input."""

    source: str
    kind: str
    frames: int = 0  # frames read
    searched: int = 0  # frames searched for faces (every n-th frame of a video)
    faces: int = 0  # rows written to the table
    output: str | None = None  # the annotated file
    codec: str | None = None  # the annotated video's codec: h264 or mp4v
    note: str | None = None  # e.g. a video that ended early

    def add_note(self, note: str) -> None:
        self.note = f"{self.note}; {note}" if self.note else note


@dataclass
class RunReport:
    """Every input's report, the skipped inputs, and how the run ended."""

    output_dir: str
    table: str
    sources: list[SourceReport] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # why the run ended early: SIGINT, SIGTERM or the error

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sources)

    @property
    def faces(self) -> int:
        return sum(s.faces for s in self.sources)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(frames=self.frames, faces=self.faces,
                   frames_per_second=self.frames / self.seconds if self.seconds > 0 else None)
        return out
