"""Lightning callbacks: layer freezing for staged fine-tuning, training throughput, weight
averages (EMA, SWA), a stop on a non-finite loss, the interrupted-fit checkpoint, classification
reports, the prior correction chosen on validation, deferred class re-weighting, progressive
resizing and self-distillation."""

from emotion_lightning.callbacks.deferred_reweighting import DeferredReweighting
from emotion_lightning.callbacks.ema import EMA
from emotion_lightning.callbacks.finite_loss import NonFiniteLossError, StopOnNonFiniteLoss
from emotion_lightning.callbacks.freeze import FreezeAllButLastN
from emotion_lightning.callbacks.interrupted import InterruptedCheckpoint
from emotion_lightning.callbacks.prior_correction import PriorCorrection
from emotion_lightning.callbacks.progressive_resize import ProgressiveResize
from emotion_lightning.callbacks.report import ClassificationReport
from emotion_lightning.callbacks.self_distillation import SelfDistillation
from emotion_lightning.callbacks.throughput import ImagesPerSecond
from emotion_lightning.callbacks.units import network_units
from emotion_lightning.callbacks.weight_averaging import SWA, AveragedWeights

__all__ = ["EMA", "SWA", "AveragedWeights", "ClassificationReport", "DeferredReweighting",
           "FreezeAllButLastN", "ImagesPerSecond", "InterruptedCheckpoint", "NonFiniteLossError",
           "PriorCorrection", "ProgressiveResize", "SelfDistillation", "StopOnNonFiniteLoss",
           "network_units"]
