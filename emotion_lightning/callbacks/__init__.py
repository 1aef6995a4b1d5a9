"""Lightning callbacks: layer freezing for staged fine-tuning, training throughput, weight EMA."""

from emotion_lightning.callbacks.ema import EMA
from emotion_lightning.callbacks.freeze import FreezeAllButLastN
from emotion_lightning.callbacks.throughput import ImagesPerSecond
from emotion_lightning.callbacks.units import network_units

__all__ = ["EMA", "FreezeAllButLastN", "ImagesPerSecond", "network_units"]
