"""emotion-lightning: facial-emotion detectors by transfer learning (Lightning + Hydra)."""

__version__ = "0.1.0"
