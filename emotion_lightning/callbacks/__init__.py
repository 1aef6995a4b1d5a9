"""Lightning callbacks: layer freezing for staged fine-tuning, training throughput."""

from emotion_lightning.callbacks.freeze import FreezeAllButLastN
from emotion_lightning.callbacks.throughput import ImagesPerSecond
from emotion_lightning.callbacks.units import network_units

__all__ = ["FreezeAllButLastN", "ImagesPerSecond", "network_units"]
