"""EmotionClassifier: a gray backbone trained with cross-entropy (hard, soft or distilled
targets), evaluated per class."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from emotion_lightning.data.cross_fit import CrossFit
from emotion_lightning.inert import set_in_vain, signature_defaults
from emotion_lightning.models.distillation import (
    TeacherOnClasses,
    distillation_targets,
    softened,
)
from emotion_lightning.models.mixing import BatchMixer, soft_cross_entropy
from emotion_lightning.models.prior import balanced_class_weights, training_log_prior
from emotion_lightning.models.registry import create_backbone
from emotion_lightning.models.schedules import SCHEDULER_INTERVALS, scheduler_config
from emotion_lightning.models.scoring import ClassScoring, hard_labels
from emotion_lightning.models.test_time import average_probabilities
from emotion_lightning.models.weights import (
    NO_WEIGHTS,
    checkpoint_class_names,
    load_checkpoint_file,
)

log = logging.getLogger(__name__)
#: Constructor arguments of earlier versions, dropped when their checkpoints are loaded.
RETIRED_HPARAMS = frozenset({"logged_samples"})
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class EmotionClassifier(ClassScoring):
    """Classifies gray face crops into ``class_names``; scored by :class:`ClassScoring`.

    Args:
        class_names: ordered class names, stored in the checkpoint.
        arch: a registered backbone (``emotion_lightning.models.list_backbones()``).
        weights: ``None``, ``"imagenet"`` or a local ``.pth``/``.ckpt`` (e.g. a distilled
            gray backbone or a stage-1 classifier), loaded weights-only. When the file is a
            classifier checkpoint whose recorded ``class_names`` differ from ``class_names``
            (other classes, or the same ones in another order), its head would map outputs to
            the wrong classes: the head is re-initialised and a warning names both lists. The
            backbone is always reused.
        conv1_init: ``random`` or ``rgb_sum`` (for RGB weights).
        image_size: input side the model was trained at (used by evaluation and inference).
        class_weights: ``None``, ``"balanced"`` (inverse train frequency) or one weight per class.
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha: mixup's Beta(alpha, alpha) for training batches (0: off; 0.2-0.4 typical).
        cutmix_alpha: cutmix's Beta(alpha, alpha) (0: off; 1.0 typical); with mixup on too,
            each mixed batch uses one of the two (:class:`~emotion_lightning.models.mixing.BatchMixer`).
        mix_p: share of training batches mixed when mixup or cutmix is on. The loss takes the
            mixed (soft) targets; training metrics score the dominant label of each image.
        channels_last: run the backbone in channels-last memory format.
        test_time_flip: average predictions over the image and its mirror in val/test/predict.
        test_time_shift: in test/predict, also average over the image moved this many pixels
            diagonally four ways (border black, like the training pad-and-crop): 5 views, 10
            with the flip. 0: off. Validation during fit (every epoch) uses the flip only.
        test_time_crop: in test/predict, average over the four corner and the centre crops of
            this many pixels instead (ten-crop with the flip; 0: off; not with the shifts).
        prior_tau: divide the probabilities by the training class prior (counts times class
            weights, recorded when fitting starts) to this power: 0 leaves them as they are,
            1 aims at balanced accuracy (:mod:`~emotion_lightning.models.prior`). The
            ``prior_correction`` callback chooses it on validation before testing.
        decay_norm_and_bias: ``False`` puts BatchNorm weights and all biases in a parameter group
            with ``weight_decay=0`` (the optimizer's weight decay then applies to weights only).
        optimizer: ``params -> Optimizer`` (a Hydra partial); default AdamW(lr=1e-3).
        scheduler: ``optimizer -> LRScheduler`` (a Hydra partial), called and stepped as
            ``scheduler_interval`` says.
        scheduler_interval: ``step`` (the default: the factory also gets ``total_steps``, the
            fit's optimizer steps, as :func:`~emotion_lightning.models.schedules.warmup_cosine`
            wants; stepped every step), ``time`` (it gets ``progress``, the spent share of
            ``trainer.max_time``: ``warmup_cosine_time``; every step) or ``epoch`` (the
            optimizer alone; every epoch: torch's StepLR, ...).
        teacher: classifier checkpoints whose averaged softened probabilities the model also
            learns (knowledge distillation, Hinton et al.): loaded when fitting starts, frozen,
            not saved with the model; they must know every one of this model's
            ``class_names`` (a teacher of more classes, or in another order, teaches its
            probabilities of these, renormalised: :class:`TeacherOnClasses`).
        distill_temperature: the softmax temperature T of teacher and student in that loss.
        distill_weight: the loss is ``(1 - w) * hard loss + w * T^2 * KL(teacher || student)``.
        distill_offline: instead, compute the teachers' softened probabilities of every
            unaugmented training face once when fitting starts and train on ``(1 - w) *
            one-hot + w * those`` with the soft-target loss (the teachers cost one pass, not
            one forward per step; needs a datamodule with ``set_train_targets``). Teachers
            trained by cross-fitting (``data.cross_fit_fold``: their checkpoints say which
            fold they did not see) label only that fold's faces, so every soft label is out of
            sample: one teacher per fold, or several.
        distill_flip: the teachers' softened probabilities of each face are averaged with
            those of its mirror image (offline: of each training face; online: of each batch).
        compile: run the backbone through :func:`torch.compile` (fit, validation and test):
            ``True`` (its default backend, inductor) or a backend's name (e.g. ``"eager"``).
        initialised_from: filled in checkpoints with the original ``weights``/``conv1_init``.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        arch: str = "resnet18",
        weights: str | None = None,
        conv1_init: str = "random",
        image_size: int = 48,
        class_weights: str | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_p: float = 1.0,
        channels_last: bool = False,
        test_time_flip: bool = False,
        test_time_shift: int = 0,
        test_time_crop: int = 0,
        prior_tau: float = 0.0,
        decay_norm_and_bias: bool = True,
        teacher: Sequence[str] | None = None,
        distill_temperature: float = 4.0,
        distill_weight: float = 0.5,
        distill_offline: bool = False,
        distill_flip: bool = False,
        compile: bool | str = False,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        initialised_from: dict | None = None,
    ) -> None:
        super().__init__()
        class_names = [str(c) for c in class_names]
        if isinstance(class_weights, str) and class_weights != "balanced":
            raise ValueError(f"class_weights must be null, 'balanced' or a list, got {class_weights!r}")
        if class_weights is not None and not isinstance(class_weights, str):
            class_weights = [float(w) for w in class_weights]
            if len(class_weights) != len(class_names):
                raise ValueError(f"{len(class_weights)} class_weights for {len(class_names)} classes")
        if test_time_shift < 0:
            raise ValueError(f"test_time_shift must be >= 0 pixels, got {test_time_shift}")
        if not 0 <= test_time_crop <= image_size or (test_time_crop and test_time_shift):
            raise ValueError(f"test_time_crop={test_time_crop}: give 0 (off) or a crop side up to "
                             f"image_size={image_size}, with test_time_shift=0")
        if prior_tau < 0:
            raise ValueError(f"model.prior_tau must be >= 0 (0: no prior correction), got {prior_tau}")
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ValueError(f"model.scheduler_interval must be one of {SCHEDULER_INTERVALS}, got "
                             f"{scheduler_interval!r}")
        teacher = [str(t) for t in teacher] if teacher else []
        if teacher and not (distill_temperature > 0 and 0.0 < distill_weight <= 1.0):
            raise ValueError(f"model.distill_temperature must be > 0 and model.distill_weight in "
                             f"(0, 1], got {distill_temperature} and {distill_weight}")
        # records the normalised class_names/class_weights above (read from this frame)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        inert = inert_settings(self.hparams)
        if inert:
            log.warning("%s change nothing as given", ", ".join(inert))
        self.net = create_backbone(arch, len(class_names), conv1_init, weights)
        _reset_head_if_classes_differ(self.net, weights, class_names)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.mixer = BatchMixer(len(class_names), mixup_alpha, cutmix_alpha, mix_p)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        initial = torch.ones(len(class_names))
        if isinstance(class_weights, list):
            initial = torch.tensor(class_weights)
        self.register_buffer("class_weight", initial)
        self.init_scoring(len(class_names))
        self._teachers: list[EmotionClassifier] = []  # a list: not submodules, not saved
        self._compiled: list[Callable] = []
        #: when set, training batches are resized to this side first (ProgressiveResize sets it)
        self.train_input_size: int | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams.class_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self._compiled[0] if self._compiled else self.net)(x)

    def predict_proba(self, x: torch.Tensor, shifts: bool = True,
                      corrected: bool = True) -> torch.Tensor:
        """Class probabilities averaged over the test-time views (``test_time_flip``, and
        ``test_time_shift`` or ``test_time_crop`` unless ``shifts=False``), prior-corrected
        (``prior_tau``) unless ``corrected=False``."""
        shift = self.hparams.test_time_shift if shifts else 0
        crop = self.hparams.test_time_crop if shifts else 0
        probs = average_probabilities(self, x, self.hparams.test_time_flip, shift, crop)
        return self.corrected(probs) if corrected else probs

    # -- training -----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        counts = None
        if datamodule is not None and hasattr(datamodule, "class_counts"):
            counts = torch.tensor(datamodule.class_counts("train"), dtype=torch.float32)
        if self.hparams.class_weights == "balanced":
            if counts is None:
                raise ValueError("class_weights=balanced needs a datamodule with class_counts()")
            weights = balanced_class_weights(counts)
            self.class_weight.copy_(weights.to(self.class_weight.device))
            log.info("balanced class weights: %s",
                     dict(zip(self.class_names, [round(w, 3) for w in weights.tolist()])))
        if counts is not None:  # the prior the loss sees, for prior correction
            self.log_prior.copy_(training_log_prior(counts, self.class_weight).to(self.log_prior))

        self._teachers, cross_fits = [], []
        for path in self.hparams.get("teacher") or []:
            checkpoint = load_checkpoint_file(path)
            self._teachers.append(EmotionClassifier.from_checkpoint_content(
                checkpoint, self.device).requires_grad_(False))
            cross_fits.append(CrossFit.from_checkpoint(checkpoint))
        if any(cross_fits) and not self.hparams.get("distill_offline"):
            raise ValueError("model.teacher holds cross-fitted teachers (each trained without a "
                             "fold), which label only the faces they did not see: distil "
                             "offline (model.distill_offline=true)")
        for i, (path, teacher) in enumerate(zip(self.hparams.get("teacher") or [],
                                                self._teachers)):
            if teacher.class_names != self.class_names:
                try:
                    self._teachers[i] = TeacherOnClasses(teacher, self.class_names)
                except ValueError as err:
                    raise ValueError(f"model.teacher {path}: {err}: a teacher must know every "
                                     "class of its student") from None
                log.info("model.teacher %s: its probabilities of %s, renormalised", path,
                         self.class_names)
        if self._teachers and self.hparams.get("distill_offline"):
            self._teach_offline(datamodule, cross_fits)

    def _teach_offline(self, datamodule, cross_fits: list[CrossFit | None]) -> None:
        """Replace the training labels by the teachers' soft labels (``distill_offline``; out of
        sample from teachers cross-fitted as ``cross_fits`` says); the teachers are not run
        during training."""
        if datamodule is None or not hasattr(datamodule, "set_train_targets"):
            raise ValueError("model.distill_offline needs a datamodule with train_faces() and "
                             "set_train_targets() (e.g. data=fer); or distil online "
                             "(model.distill_offline=false)")
        faces, labels = datamodule.train_faces()
        start = time.perf_counter()
        targets = distillation_targets(
            self._teachers, faces, labels, self.hparams.distill_temperature,
            self.hparams.distill_weight, self.device,
            self.trainer.precision_plugin.forward_context(),
            progress=self.trainer.is_global_zero, cross_fits=cross_fits,
            flip=self.hparams.get("distill_flip", False))
        datamodule.set_train_targets(targets)
        log.info("offline distillation: soft labels of %d training faces from %d teacher(s) in "
                 "%.1f s", len(targets), len(self._teachers), time.perf_counter() - start)
        self._teachers = []

    def setup(self, stage: str) -> None:
        super().setup(stage)
        backend = self.hparams.get("compile")
        if backend and not self._compiled:
            options = {} if backend is True else {"backend": str(backend)}
            self._compiled = [torch.compile(self.net, **options)]

    def on_train_start(self) -> None:
        self.val_acc_best.reset()  # forget the sanity check

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, weight=self.class_weight,
                               label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.train_input_size and self.train_input_size != x.shape[-1]:
            x = F.interpolate(x, size=self.train_input_size, mode="bilinear", antialias=True,
                              align_corners=False)
        soft = y.is_floating_point()  # class-probability targets [N, C] (e.g. FER+ votes)
        if self.mixer.enabled:
            x, y = self.mixer(x, y)
            soft = True
        logits = self(x)
        if soft:
            loss = soft_cross_entropy(logits, y, self.class_weight, self.hparams.label_smoothing)
        else:
            loss = self._loss(logits, y)
        if self._teachers:
            loss, kl = self._distilled(loss, logits, x)
            self.log("train/distill_kl", kl, on_step=False, on_epoch=True)
        self.metrics["train_"].update(logits.detach(), hard_labels(y))
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict({f"train/{k}": m for k, m in self.metrics["train_"].items()},
                      on_step=False, on_epoch=True)
        return loss

    def _distilled(self, hard_loss: torch.Tensor, logits: torch.Tensor,
                   x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1 - w) * hard_loss + w * T^2 * KL(teachers' mean softened probabilities ||
        the student's)`` and the KL term, each teacher seeing ``x`` at its own input size."""
        t, w = self.hparams.distill_temperature, self.hparams.distill_weight
        target = softened(self._teachers, x, t, self.hparams.get("distill_flip", False))
        log_student = F.log_softmax(logits.float() / t, dim=1)
        kl = F.kl_div(log_student, target, reduction="batchmean")
        return (1.0 - w) * hard_loss + w * t * t * kl, kl.detach()

    # -- optimisation -------------------------------------------------------------------
    def configure_optimizers(self):
        factory = self.optimizer_factory or (lambda ps: torch.optim.AdamW(ps, lr=1e-3))
        optimizer = factory(self._parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": scheduler_config(self.scheduler_factory, optimizer,
                                                 self.hparams.scheduler_interval, self.trainer)}

    def _parameter_groups(self) -> list:
        """Trainable parameters; without decay on norm weights and biases unless configured."""
        params = [p for p in self.parameters() if p.requires_grad]
        if self.hparams.decay_norm_and_bias:
            return params
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    # -- checkpoints are self-describing and load offline ------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path,
                        map_location: str | torch.device = "cpu") -> EmotionClassifier:
        """The classifier saved in ``path``, read once and weights-only (a file that is not a
        checkpoint, or would run code when unpickled, fails with a clear error), in eval mode.
        Hyper-parameters of earlier versions that no longer exist (``logged_samples``: now
        ``callbacks.report.samples``) are ignored."""
        return cls.from_checkpoint_content(load_checkpoint_file(path), map_location)

    @classmethod
    def from_checkpoint_content(cls, checkpoint: Mapping, map_location: str | torch.device = "cpu"
                                ) -> EmotionClassifier:
        """:meth:`from_checkpoint` of a checkpoint already read with ``load_checkpoint_file``."""
        hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items()
                   if k not in RETIRED_HPARAMS}
        model = cls(**hparams)
        model.on_load_checkpoint(checkpoint)
        model.load_state_dict(checkpoint["state_dict"])
        return model.to(map_location).eval()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        hparams = checkpoint.get("hyper_parameters", {})
        if hparams.get("weights") is not None or hparams.get("conv1_init") != "random":
            hparams["initialised_from"] = {"weights": hparams.get("weights"),
                                           "conv1_init": hparams.get("conv1_init")}
            hparams["weights"] = None  # the state dict holds the weights: load needs no file
            hparams["conv1_init"] = "random"


def inert_settings(hparams: Mapping) -> list[str]:
    """:class:`EmotionClassifier` settings away from their defaults that change nothing with the
    others given, as ``"model.key=value (why)"``: ``mix_p`` with mixup and cutmix off, their
    alphas with ``mix_p`` 0, the distillation knobs without a teacher."""
    defaults = signature_defaults(EmotionClassifier)
    gated = []
    if not (hparams.get("mixup_alpha") or hparams.get("cutmix_alpha")):
        gated.append(("mix_p", "mixup_alpha and cutmix_alpha are 0"))
    if hparams.get("mix_p", defaults["mix_p"]) == 0:
        gated += [(key, "mix_p is 0") for key in ("mixup_alpha", "cutmix_alpha")]
    if not hparams.get("teacher"):
        gated += [(key, "no model.teacher")
                  for key in ("distill_temperature", "distill_weight", "distill_offline",
                              "distill_flip")]
    return set_in_vain(defaults, hparams, gated, prefix="model.")


def _reset_head_if_classes_differ(net: nn.Module, weights: str | None,
                                  class_names: list[str]) -> None:
    """Re-initialise ``net``'s head when ``weights`` records other class names (and warn)."""
    if weights in NO_WEIGHTS or weights == "imagenet":
        return
    source = checkpoint_class_names(weights)
    if source is None or source == class_names:
        return
    head = getattr(net, "fc", None)
    if isinstance(head, nn.Linear):
        head.reset_parameters()
        action = "re-initialised the classifier head (the backbone is reused)"
    else:
        action = "could not find a Linear head named 'fc' to re-initialise: check the head"
    log.warning("weights %s were trained for classes %s but this model has %s: %s",
                weights, source, class_names, action)

