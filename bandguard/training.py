"""One training loop for every recipe bandguard needs.

``train(model, data, config)`` runs SGD with a one-cycle or cosine schedule in one of four input
modes: natural images, Gaussian noise augmentation, low-pass or high-pass filtered images
(Wang et al. 1905.13545, through :mod:`bandguard.fourier`). Optional hooks: an ``adversary`` (any
bandguard :class:`~bandguard.attacks.Attack`, e.g. ``PGD(eps=0.3)``) for adversarial training,
weight ``regularizers`` ``(model) -> scalar`` added to the loss, and callbacks with
``on_epoch_end(model, epoch, logs)``.

Mixed precision (bf16 autocast) and channels_last are used on CUDA and on CPUs with native bf16;
evaluation is always in float32. With ``checkpoint`` set, the full training state is written
atomically after every epoch, and ``resume=True`` continues from it; on the CPU a seeded run gives
bit-identical weights whether or not it was interrupted.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from bandguard._amp import BF16Forward, native_bf16
from bandguard._checks import (
    check_bool,
    check_choice,
    check_device,
    check_enum,
    check_int,
    check_nonnegative,
    check_path,
    check_positive,
    check_seed,
)
from bandguard._io import torch_save_atomic
from bandguard._modes import model_mode
from bandguard._progress import bar as progress_bar
from bandguard._random import device_generator
from bandguard.attacks.protocol import Attack
from bandguard.fourier import FilterKind, FrequencyFilter, MaskShape
from bandguard.models import PatchWhitening, accuracy, checkpoint_payload, fit_whitening, load_checkpoint

__all__ = [
    "AdversaryMode",
    "BestPGD",
    "Callback",
    "Schedule",
    "TrainConfig",
    "TrainMode",
    "TrainResult",
    "dataset_defaults",
    "evaluate",
    "subset",
    "subset_indices",
    "train",
    "tta_logits",
]

log = logging.getLogger(__name__)



class TrainMode(str, enum.Enum):
    """What the model is trained on."""

    NATURAL = "natural"  # the images as they are
    GAUSSIAN = "gaussian"  # plus N(0, sigma^2) noise, clipped to [0, 1]
    LOWPASS = "lowpass"  # low-pass filtered (Wang et al. 1905.13545), via fourier.FrequencyFilter
    HIGHPASS = "highpass"  # high-pass filtered, likewise


class Schedule(str, enum.Enum):
    """Learning-rate schedule, stepped per batch."""

    ONECYCLE = "onecycle"
    COSINE = "cosine"
    CONSTANT = "constant"
    # airbench's (Jordan 2404.00498): linear from 0.2x to the peak at 23 % of the steps, then
    # linear down to 0.07x at the end.
    TRIANGLE = "triangle"


class Flip(str, enum.Enum):
    """How ``augment`` flips images horizontally."""

    RANDOM = "random"  # each image with probability 1/2, drawn afresh every epoch
    # A random half in the first epoch, then every image flipped in exactly the epochs it was not
    # the epoch before (airbench's alternating flip: every epoch sees the other view).
    ALTERNATING = "alternating"


class Fill(str, enum.Enum):
    """What the translation of ``augment`` moves in at the borders."""

    ZEROS = "zeros"
    REFLECT = "reflect"


FILTERED_MODES = (TrainMode.LOWPASS, TrainMode.HIGHPASS)
AMP_CHOICES = ("auto", "off", "bf16")

Regularizer = Callable[[nn.Module], torch.Tensor]


class AdversaryMode(str, enum.Enum):
    """The mode the model is in while the training adversary is crafted."""

    TRAIN = "train"  # as the training step sees it: BatchNorm batch statistics (Madry, Wong et al.)
    EVAL = "eval"  # every submodule in eval mode: running statistics, no dropout

    def __repr__(self) -> str:
        return repr(self.value)


class Callback(Protocol):
    """What :func:`train` calls after each epoch; ``on_train_begin(model)`` is optional too."""

    def on_epoch_end(self, model: nn.Module, epoch: int, logs: dict[str, float]) -> None: ...


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
        epochs: passes over the training data.
        batch_size: images per step.
        lr: peak learning rate (one-cycle) or initial rate (cosine, constant).
        momentum, nesterov, weight_decay: SGD settings.
        schedule: ``"onecycle"``, ``"cosine"`` or ``"constant"``, stepped per batch.
        seed: drives shuffling, augmentation and noise (model initialisation is the caller's).
        mode: a :class:`TrainMode` value: ``"natural"``, ``"gaussian"`` (add N(0, sigma^2) noise,
            clip to [0, 1]), ``"lowpass"`` or ``"highpass"`` (the images filtered by
            :meth:`frequency_filter`: the same transform ``filtered_accuracy`` applies).
        sigma: noise level for ``"gaussian"``.
        radius: cut-off of the filtered modes, in frequency-index units.
        filter_shape: ``"disc"`` (Wang et al. 1905.13545, default) or ``"square"`` (Yin et al.
            1906.08988) for the filtered modes.
        filter_rescale: Wang et al.'s per-image ``x / max(x)`` after filtering (default off: the
            raw filtered image, never clipped, as their HFC code makes it).
        augment: random translation and horizontal flip, for CIFAR-like data.
        translate: the largest shift of ``augment`` in pixels (each axis).
        fill: what the shift moves in: ``"zeros"`` or ``"reflect"`` (airbench).
        flip: ``"random"`` or ``"alternating"`` (airbench: each image flipped every other epoch).
        limit: train on ``limit`` images only (quick runs): a fixed random subset drawn with
            ``seed`` (:func:`subset`), never the first ones, which are one or two classes in
            data sets stored class by class; ``None`` uses all.
        amp: ``"auto"`` (bf16 autocast and channels_last where the device computes bf16
            natively: CUDA with bf16, CPUs with AVX512-BF16 or AMX; float32 master weights),
            ``"off"`` or ``"bf16"`` (always).
        label_smoothing: cross-entropy label smoothing.
        bias_lr_scale: learning-rate factor for the biases of normalisation layers (airbench: 64);
            their weight decay is divided by it, so the decay per step (lr x weight decay) is the
            same for every parameter.
        lookahead: every 5 steps pull the weights back towards an exponential moving average of
            themselves, with airbench's schedule (the average's decay grows as
            ``0.95^5 (t / T)^3``), and end on the average.
        checkpoint: file written atomically after each epoch (a bandguard checkpoint with the
            training state added); ``None`` writes nothing.
        resume: continue from ``checkpoint`` if it exists.
        adversary: any bandguard attack with one eps (e.g. ``PGD(eps=0.3, steps=10)`` or a preset,
            :func:`bandguard.attacks.attack_preset`); every batch is replaced by its adversarial
            examples (:meth:`~bandguard.attacks.Attack.craft`: every sample attacked, the attack's
            randomness drawn from the run's ``seed``).
        adversary_mode: the model's mode while the adversary is crafted. ``"train"`` (default)
            leaves the modes the training step uses, as Madry et al.'s (1706.06083) and Wong et
            al.'s (2001.03994) code do: BatchNorm normalises with the statistics of the batch
            being attacked and updates its running statistics on every attack forward, dropout
            is active. ``"eval"`` crafts against the network as it will be evaluated (running
            statistics, no dropout, running statistics untouched). Either way every flag comes
            back exactly as it was.
        regularizers: ``(penalty, weight)`` pairs; ``weight * penalty(model)`` joins the loss.
        arch, dataset: recorded in the checkpoint metadata.
    """

    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    seed: int = 0
    mode: str = "natural"
    sigma: float = 0.0
    radius: float | None = None
    filter_shape: str = "disc"
    filter_rescale: bool = False
    augment: bool = False
    translate: int = 4
    fill: str = "zeros"
    flip: str = "random"
    limit: int | None = None
    amp: str = "auto"
    label_smoothing: float = 0.0
    bias_lr_scale: float = 1.0
    lookahead: bool = False
    checkpoint: str | None = None
    resume: bool = False
    adversary: Attack | None = None
    adversary_mode: AdversaryMode = AdversaryMode.TRAIN
    regularizers: Sequence[tuple[Regularizer, float]] = ()
    arch: str | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        check_int(self.epochs, "epochs", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_positive(self.lr, "lr")
        check_nonnegative(self.momentum, "momentum")
        check_nonnegative(self.weight_decay, "weight_decay")
        check_nonnegative(self.label_smoothing, "label_smoothing")
        check_seed(self.seed, "seed")
        check_int(self.translate, "translate", minimum=0)
        check_positive(self.bias_lr_scale, "bias_lr_scale")
        for flag in ("nesterov", "augment", "resume", "lookahead"):
            check_bool(getattr(self, flag), flag)
        # Stored as plain strings: checkpoint metadata must load with weights_only=True.
        object.__setattr__(self, "schedule", check_enum(self.schedule, Schedule, "schedule").value)
        object.__setattr__(self, "mode", check_enum(self.mode, TrainMode, "mode").value)
        object.__setattr__(self, "fill", check_enum(self.fill, Fill, "fill").value)
        object.__setattr__(self, "flip", check_enum(self.flip, Flip, "flip").value)
        object.__setattr__(self, "filter_shape", check_enum(self.filter_shape, MaskShape, "filter_shape").value)
        check_bool(self.filter_rescale, "filter_rescale")
        object.__setattr__(self, "amp", check_choice(self.amp, AMP_CHOICES, "amp"))
        check_nonnegative(self.sigma, "sigma")
        if self.mode == "gaussian" and self.sigma == 0:
            raise ValueError("mode 'gaussian' needs sigma > 0, got sigma=0")
        if self.mode in FILTERED_MODES:
            if self.radius is None:
                raise ValueError(f"mode {self.mode!r} needs a radius, got radius=None")
            check_nonnegative(self.radius, "radius")
        if self.limit is not None:
            check_int(self.limit, "limit", minimum=1)
        if self.checkpoint is not None:
            check_path(self.checkpoint, "checkpoint")
        if self.resume and self.checkpoint is None:
            raise ValueError("resume=True needs a checkpoint path, got checkpoint=None")
        if self.adversary is not None:
            if not isinstance(self.adversary, Attack):
                raise TypeError(f"adversary must be a bandguard Attack, got {type(self.adversary).__name__}")
            if len(self.adversary.epsilons) != 1:
                raise ValueError(f"adversary must have one eps, got {self.adversary.epsilons}")
        object.__setattr__(self, "adversary_mode", check_enum(self.adversary_mode, AdversaryMode, "adversary_mode"))
        for pair in self.regularizers:
            if not (isinstance(pair, tuple) and len(pair) == 2 and callable(pair[0])):
                raise ValueError(f"regularizers must be (callable, weight) pairs, got {pair!r}")

    def frequency_filter(self) -> FrequencyFilter | None:
        """The input filter of the filtered modes (``None`` in the others).

        ``filtered_accuracy(model, x, y, [radius], kind=..., shape=filter_shape,
        rescale=filter_rescale)`` applies the very same transform, so its accuracy equals the
        epoch log's ``test_acc_filtered`` for the same model and images.
        """
        if self.mode not in FILTERED_MODES:
            return None
        kind = FilterKind.LOW if self.mode == TrainMode.LOWPASS else FilterKind.HIGH
        return FrequencyFilter(float(self.radius), kind=kind, shape=self.filter_shape,  # type: ignore[arg-type]
                               rescale=self.filter_rescale)

    def recipe(self) -> dict[str, Any]:
        """The settings as plain values, for checkpoint metadata (callables by name)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "adversary":
                value = None if value is None else repr(value)
            elif field.name == "adversary_mode":
                value = value.value
            elif field.name == "regularizers":
                value = [[getattr(fn, "__name__", repr(fn)), float(w)] for fn, w in value]
            out[field.name] = value
        return out


@dataclasses.dataclass
class TrainResult:
    """What a run produced: per-epoch logs and the final clean test accuracy (if a test set was given).

    Args:
        history: one dict of logs per epoch (``loss``, ``train_acc``, ``test_acc``, ...).
        test_accuracy: the last epoch's clean test accuracy, or ``None``.
        checkpoint: where the model was saved, or ``None``.
    """

    history: list[dict[str, float]]
    test_accuracy: float | None
    checkpoint: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train(
    model: nn.Module,
    data: Any,
    config: TrainConfig,
    *,
    test_data: Any = None,
    callbacks: Sequence[Callback] = (),
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``model`` **in place** on ``data`` with the recipe in ``config``.

    Args:
        model: a classifier taking images in [0, 1] ``[N, C, H, W]``; moved to ``device``.
        data: an ``ImageDataset`` (``.images``, ``.labels``) or a pair ``(images, labels)``;
            images uint8 in [0, 255] or float in [0, 1], labels int64 ``[N]``.
        config: the recipe.
        test_data: same forms as ``data``; clean accuracy on it is logged each epoch.
        callbacks: objects with ``on_epoch_end(model, epoch, logs)`` (and optionally
            ``on_train_begin(model)``); the model is in eval mode during the call.
        device: where to train; default the device of the model's parameters.
        progress: a tqdm bar per epoch: ``True`` always, ``None`` on a terminal only
            (:mod:`bandguard._progress`), ``False`` never.

    Submodules found in eval mode while ``model`` itself is in train mode are taken as frozen by
    the caller (a BatchNorm kept on its running statistics, say): they stay in eval mode for the
    whole run, and parameters with ``requires_grad=False`` are never updated.

    Returns:
        A :class:`TrainResult`. The model ends in eval mode.
    """
    images, labels = _unpack(data, "data")
    progress = None if progress is None else check_bool(progress, "progress")
    frozen = [m for m in model.modules() if model.training and not m.training]
    images, labels = subset(images, labels, config.limit, seed=config.seed)
    test = _unpack(test_data, "test_data") if test_data is not None else None
    device = check_device(device) if device is not None else _model_device(model)
    model.to(device)
    use_bf16 = _use_bf16(config.amp, device)
    if use_bf16:
        model.to(memory_format=torch.channels_last)

    generator = torch.Generator().manual_seed(config.seed)
    # The alternating flip's first-epoch half, from its own stream so other recipes draw as before.
    flip_first = torch.rand(len(labels), generator=torch.Generator().manual_seed(config.seed + 1)) < 0.5
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    optimizer = torch.optim.SGD(
        _param_groups(model, config), lr=config.lr, momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay,
    )
    scheduler = _scheduler(optimizer, config, steps_per_epoch)
    average = _Lookahead(model, config.epochs * steps_per_epoch) if config.lookahead else None

    history: list[dict[str, float]] = []
    start_epoch = 0
    if config.resume and config.checkpoint and Path(config.checkpoint).exists():
        state = _load_train_state(config.checkpoint, model, optimizer, scheduler, generator, average)
        history, start_epoch = state["history"], int(state["epoch"]) + 1
        log.info("resumed from %s at epoch %d", config.checkpoint, start_epoch)

    if start_epoch == 0:
        # Data-dependent first layers (airbench's patch whitening) are set from the first
        # training images as the mode makes them (noisy, filtered), before any step: fitted on
        # clean images, whitening scales the noise's high frequencies up by orders of magnitude,
        # and a Gaussian-trained net then fails on clean images (27 % measured).
        if any(isinstance(m, PatchWhitening) for m in model.modules()):  # no transform work for other nets
            sample = _to_float(images[:5000]).to(device)
            fit_whitening(model, _transform(sample, dataclasses.replace(config, augment=False),
                                            torch.Generator().manual_seed(config.seed + 3)))
        if average is not None:
            average.reset(model)
        _call_begin(callbacks, model)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        for m in frozen:
            m.eval()
        order = torch.randperm(len(labels), generator=generator)
        total_loss, correct, seen = 0.0, 0, 0
        bar = progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", progress=progress, unit="batch")
        for idx in order.split(config.batch_size):
            x = _to_float(images[idx]).to(device, non_blocking=True)
            y = labels[idx].to(device, non_blocking=True)
            flip = None
            if config.flip == Flip.ALTERNATING:
                flip = flip_first[idx] ^ bool(epoch % 2)
            x = _transform(x, config, generator, flip)
            if config.adversary is not None:
                net = BF16Forward(model) if use_bf16 else model
                x = _adversarial_batch(config.adversary, config.adversary_mode, net, x, y, generator)
            if use_bf16:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext():
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
            for penalty, weight in config.regularizers:
                loss = loss + weight * penalty(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if average is not None:
                average.step(model)
            total_loss += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
            bar.update(1)
        bar.close()
        logs = {"epoch": epoch + 1, "loss": total_loss / seen, "train_acc": correct / seen}
        if test is not None:
            logs["test_acc"] = evaluate(model, *test, device=device)
            if config.mode in FILTERED_MODES:
                logs["test_acc_filtered"] = evaluate(model, *test, device=device, config=config)
        history.append(logs)
        log.info("epoch %d: %s", epoch + 1, logs)
        model.eval()
        for cb in callbacks:
            cb.on_epoch_end(model, epoch + 1, logs)
        if config.checkpoint:
            _save_train_state(config, model, optimizer, scheduler, generator, epoch, history, average)
    model.eval()
    if use_bf16:
        model.to(memory_format=torch.contiguous_format)
    final = history[-1].get("test_acc") if history else None
    return TrainResult(history=history, test_accuracy=final, checkpoint=config.checkpoint)


def dataset_defaults(dataset: str) -> dict[str, Any]:
    """The training settings that depend on the data set, where a caller gives none.

    MNIST: lr 0.05 and no augmentation (digits are not mirror-symmetric); anything else (CIFAR-10,
    image folders): lr 0.1 with random crops and flips.

    Args:
        dataset: a ``load_dataset`` name or folder.

    Returns:
        ``{"lr": float, "augment": bool}``, for :class:`TrainConfig`.
    """
    if dataset == "mnist":
        return {"lr": 0.05, "augment": False}
    return {"lr": 0.1, "augment": True}


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    device: torch.device | str | None = None,
    batch_size: int = 1000,
    config: TrainConfig | None = None,
    tta: bool = False,
) -> float:
    """Clean float32 accuracy of ``model`` on ``images`` (uint8 or float ``[N, C, H, W]``), in [0, 1].

    With ``config`` in a filtered mode, the images are first filtered by
    ``config.frequency_filter()``, as in training. ``tta=True`` reports the accuracy of
    :func:`tta_logits` (test-time augmentation: for a reported clean accuracy only, never for
    a model under attack).

    Args:
        model: the classifier.
        images: uint8 in [0, 255] or float in [0, 1], ``[N, C, H, W]``.
        labels: int64 ``[N]``.
        device: where to run; ``None``: the model's device.
        batch_size: images per forward.
        config: a filtered mode's recipe, whose filter is applied first; ``None``: none.
        tta: test-time augmentation.

    Returns:
        The accuracy in [0, 1].
    """
    check_bool(tta, "tta")
    transform = config.frequency_filter() if config is not None else None
    device = check_device(device) if device is not None else _model_device(model)
    correct = 0
    for xb, yb in zip(images.split(batch_size), labels.split(batch_size)):
        x = _to_float(xb).to(device)
        if transform is not None:
            x = transform(x)
        if tta:
            correct += int((tta_logits(model, x).argmax(1) == yb.to(device)).sum())
        else:
            correct += round(accuracy(model, x, yb.to(device)) * len(yb))
    return correct / len(labels)


@torch.no_grad()
def tta_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """airbench's test-time augmentation (level 2): mirror and one-pixel translations.

    The mean of the logits of ``x`` and its mirror image, averaged half and half with the same for
    ``x`` shifted by one pixel up-left and down-right (reflect fill). Six forwards per image.

    Args:
        model: a classifier; run in eval mode (mode restored).
        x: ``[N, C, H, W]`` images in the model's bounds.

    Returns:
        ``[N, classes]`` logits.
    """
    def mirrored(inputs: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(inputs) + 0.5 * model(inputs.flip(-1))

    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    with model_mode(model):
        shifted = 0.5 * mirrored(padded[..., :h, :w]) + 0.5 * mirrored(padded[..., 2:, 2:])
        return 0.5 * mirrored(x) + 0.5 * shifted


class BestPGD:
    """A callback that keeps the epoch with the best PGD accuracy (Wong et al. 2001.03994).

    Fast adversarial training can overfit catastrophically: within one epoch the model stops
    resisting multi-step attacks while FGSM accuracy soars. After every epoch this measures PGD
    accuracy on held-out images (logged as ``pgd_acc``) and copies the weights when it is the best
    so far; :meth:`restore` loads those weights back.

    Args:
        images, labels: held-out images ``[N, C, H, W]`` (uint8 or float in [0, 1]) and labels.
        eps: the Linf budget (the training adversary's).
        steps: PGD steps (step size 2.5 eps / steps, one random start).
        seed: PGD's random start.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, eps: float, steps: int = 10,
                 seed: int = 0) -> None:
        self.images, self.labels = _to_float(images), labels
        self.eps, self.steps, self.seed = float(eps), int(steps), int(seed)
        self.best: tuple[float, int, dict[str, torch.Tensor]] | None = None

    def on_epoch_end(self, model: nn.Module, epoch: int, logs: dict[str, float]) -> None:
        from bandguard.attacks import PGD  # attacks import training's presets: import at use

        device = _model_device(model)
        attack = PGD(eps=self.eps, norm="linf", steps=self.steps, step_size=2.5 * self.eps / self.steps,
                     seed=self.seed)
        result = attack(model, self.images.to(device), self.labels.to(device))
        acc = float(result.robust_accuracy[0])
        logs["pgd_acc"] = acc
        if self.best is None or acc > self.best[0]:
            self.best = (acc, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})

    def restore(self, model: nn.Module) -> int | None:
        """Load the best epoch's weights into ``model``; returns that epoch (``None``: none seen)."""
        if self.best is None:
            return None
        model.load_state_dict(self.best[2])
        return self.best[1]


# --------------------------------------------------------------------------- helpers


def subset(
    images: torch.Tensor, labels: torch.Tensor, limit: int | None, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random subset of ``limit`` images and their labels, in the data set's order.

    Random rather than the first ``limit``: data sets stored class by class (CIFAR-10 from image
    folders) would otherwise give one or two classes.

    Args:
        images: ``[N, ...]``.
        labels: ``[N]``.
        limit: how many to keep; ``None`` (or ``>= N``) keeps all, unchanged.
        seed: draws the subset.

    Returns:
        ``(images[idx], labels[idx])`` with ``idx`` sorted.
    """
    if limit is None or limit >= len(labels):
        return images, labels
    idx = subset_indices(len(labels), limit, seed)
    return images[idx.to(images.device)], labels[idx.to(labels.device)]


def subset_indices(size: int, n: int | None, seed: int) -> torch.Tensor:
    """A fixed subset of ``range(size)``: ``n`` indices drawn with ``seed``, sorted (``None``: all).

    The one draw behind :func:`subset`, the benchmark harness's samples and the examples' test
    images, so the same ``(size, n, seed)`` picks the same images everywhere.

    Args:
        size: the data set's length.
        n: how many to draw; ``None`` (or ``>= size``): all.
        seed: draws the subset.

    Returns:
        int64 indices ``[min(n, size)]``, sorted.
    """
    if n is None or n >= size:
        return torch.arange(size)
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def _unpack(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    else:
        raise TypeError(f"{name} must be an ImageDataset or an (images, labels) pair, got {type(data).__name__}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"{name} images must be a tensor [N, C, H, W], got {getattr(images, 'shape', images)!r}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        got = getattr(labels, "shape", labels)
        raise ValueError(f"{name} labels must be int64 [N] matching the images, got {got!r}")
    return images, labels


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _use_bf16(amp: str, device: torch.device) -> bool:
    if amp == "off":
        return False
    supported = native_bf16(device)
    if amp == "bf16" and not supported:
        log.warning("%s computes bf16 without native support; bf16 autocast will be slow", device)
    return supported or amp == "bf16"


def _transform(
    x: torch.Tensor, config: TrainConfig, generator: torch.Generator | None, flip: torch.Tensor | None = None
) -> torch.Tensor:
    # Drawn where x is: on a GPU from a generator seeded by the run's (one CPU draw per batch); on
    # the CPU the run's generator itself, so CPU runs draw exactly as before.
    generator = device_generator(generator, x.device)
    if config.augment and generator is not None:
        x = _crop_flip(x, generator, pad=config.translate, fill=config.fill, flip=flip)
    if config.mode == "gaussian" and generator is not None:
        noise = torch.randn(x.shape, generator=generator, device=x.device).to(x.dtype)
        x = (x + config.sigma * noise).clamp_(0, 1)
    elif config.mode in FILTERED_MODES:
        x = config.frequency_filter()(x)  # type: ignore[misc]
    return x


def _crop_flip(
    x: torch.Tensor, generator: torch.Generator, pad: int = 4, fill: str = "zeros", flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels and horizontal flip per image, batched.

    ``fill`` is what moves in (``"zeros"`` or ``"reflect"``); ``flip`` (bool ``[N]``) says which
    images to flip, else each is flipped with probability 1/2.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="constant" if fill == Fill.ZEROS else "reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)  # generator on x's device
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    drawn = torch.rand(n, generator=generator, device=x.device) < 0.5
    flip = (drawn if flip is None else flip).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # [N, H]
    cols = torch.arange(w, device=x.device)[None, :].expand(n, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]  # [N, W]
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def _adversarial_batch(
    adversary: Attack, mode: AdversaryMode, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """The adversary's examples of one batch, crafted with the model in ``mode``.

    The attack's randomness is seeded from the run's generator, so a seeded run (and a resumed
    one) draws the same random starts, and each batch gets fresh ones.
    """
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    attack_generator = torch.Generator(device=x.device).manual_seed(seed)
    train_mode = None if mode is AdversaryMode.TRAIN else False
    # Input gradients only: frozen parameters keep autograd from storing what weight gradients
    # would need; the training step after this sees every flag as it was.
    with model_mode(model, train=train_mode, requires_grad=False):
        return adversary.craft(model, x, y, generator=attack_generator)


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """The trainable parameters, normalisation-layer biases apart when ``bias_lr_scale`` != 1."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.bias_lr_scale == 1:
        return [{"params": params}]
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    biases = {id(m.bias): m.bias for m in model.modules()
              if isinstance(m, norms) and getattr(m, "bias", None) is not None and m.bias.requires_grad}
    scale = config.bias_lr_scale
    return [
        {"params": [p for p in params if id(p) not in biases]},
        {"params": list(biases.values()), "lr": config.lr * scale, "weight_decay": config.weight_decay / scale},
    ]


class _Lookahead:
    """airbench's Lookahead: every 5 steps the weights move to an EMA of themselves.

    The EMA's decay at step ``t`` of ``T`` is ``0.95^5 (t / T)^3`` (0 early: no effect; up to
    about 0.77 at the end); after the last step the weights are the EMA.
    """

    def __init__(self, model: nn.Module, total_steps: int) -> None:
        self.total = total_steps
        self.count = 0
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def step(self, model: nn.Module) -> None:
        self.count += 1
        if self.count % 5 and self.count < self.total:
            return
        decay = 0.95**5 * (self.count / self.total) ** 3 if self.count < self.total else 1.0
        state = model.state_dict()
        with torch.no_grad():
            for k, avg in self.average.items():
                avg.lerp_(state[k].detach(), 1 - decay)
                state[k].copy_(avg)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.average = {k: v.clone() for k, v in state["average"].items()}


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> Any:
    total = config.epochs * steps_per_epoch
    if config.schedule == "triangle":
        peak = int(0.23 * total)

        def triangle(step: int) -> float:
            if step < peak:
                return 0.2 + 0.8 * step / peak
            return 1.0 + (0.07 - 1.0) * (step - peak) / max(1, total - peak)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, triangle)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=0.25,
            anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0,
            cycle_momentum=False,
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _call_begin(callbacks: Sequence[Callback], model: nn.Module) -> None:
    with model_mode(model):
        for cb in callbacks:
            begin = getattr(cb, "on_train_begin", None)
            if begin is not None:
                begin(model)


def _save_train_state(
    config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
    generator: torch.Generator, epoch: int, history: list[dict[str, float]], average: _Lookahead | None = None,
) -> None:
    payload = checkpoint_payload(
        model, arch=config.arch, dataset=config.dataset,
        test_accuracy=history[-1].get("test_acc"), recipe=config.recipe(),
    )
    payload["train_state"] = {
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if not callable(v)},
        "generator": generator.get_state(),
        "history": history,
    }
    if average is not None:
        payload["train_state"]["lookahead"] = average.state_dict()
    torch_save_atomic(payload, os.fspath(config.checkpoint))  # type: ignore[arg-type]


def _load_train_state(
    path: str, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
    average: _Lookahead | None = None,
) -> dict[str, Any]:
    ckpt = load_checkpoint(path)  # weights_only=True, clear errors on corrupt files
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = raw.get("train_state")
    if state is None:
        raise ValueError(f"checkpoint {path!r} holds no training state to resume from")
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path!r} does not fit this model: {str(err).splitlines()[0]}") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    if average is not None:
        average.load_state_dict(state["lookahead"])
    return state
