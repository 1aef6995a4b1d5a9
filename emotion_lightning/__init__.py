"""emotion-lightning: facial-emotion detectors by transfer learning (Lightning + Hydra)."""

from emotion_lightning.runtime import configure_environment

configure_environment()

__version__ = "0.1.0"
