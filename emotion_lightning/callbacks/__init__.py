"""Lightning callbacks: layer freezing for staged fine-tuning."""

from emotion_lightning.callbacks.freeze import FreezeAllButLastN
from emotion_lightning.callbacks.units import network_units

__all__ = ["FreezeAllButLastN", "network_units"]
