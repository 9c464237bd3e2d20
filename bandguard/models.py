"""Reference networks, the ``Normalize`` layer and safe checkpoints.

Every model here takes images in bounds ``(0, 1)`` and normalizes inside itself (as RobustBench
models do), so attacks and defenses work in pixel space. Networks are created by name from one
registry (``create_model("mnist_cnn")``); checkpoints hold a state dict plus metadata and are read
with ``torch.load(..., weights_only=True)`` only.

Loading never runs code by surprise: :func:`load_model` reads checkpoint files only, and building a
model from Python code takes the explicit :func:`model_from_code` (``"package.module:function"``),
which imports and runs that code, as ``torch.hub.load(..., trust_repo=True)`` does.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from bandguard._checks import (
    check_bounds,
    check_images,
    check_int,
    check_labels,
    check_logits,
    check_model,
    check_path,
    check_same_device_dtype,
    check_tensor,
)
from bandguard._io import torch_save_atomic
from bandguard._modes import model_mode
from bandguard._registry import Registry
from bandguard._version import __version__

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS",
    "Checkpoint",
    "ModelInfo",
    "Normalize",
    "PatchWhitening",
    "accuracy",
    "check_input_shape",
    "checkpoint_payload",
    "create_model",
    "fit_whitening",
    "load_checkpoint",
    "load_model",
    "load_pretrained",
    "load_weights",
    "model_from_code",
    "model_info",
    "predict",
    "robustbench_model",
    "save_checkpoint",
    "torchvision_model",
]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CHECKPOINT_FORMAT = "bandguard-checkpoint/1"


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; keeps normalization inside the model.

    Args:
        mean: per-channel means, length ``C``.
        std: per-channel standard deviations, length ``C``, all > 0.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]``.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not len(mean):
            raise ValueError(f"mean and std must have the same non-zero length, got {mean}, {std}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be > 0, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.flatten().tolist())
        std = tuple(round(v, 4) for v in self.std.flatten().tolist())
        return f"mean={mean}, std={std}"


# --------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of a reference net: its factory and the data it expects.

    Args:
        name: the registry name.
        factory: builds the net (``Normalize`` included).
        dataset: the data set it is made for.
        input_shape: ``(C, H, W)`` it takes.
        num_classes: its outputs.
        mean, std: the per-channel normalization inside it.
    """

    name: str
    factory: Callable[..., nn.Module]
    dataset: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


MODELS: Registry[ModelInfo] = Registry("model")


Factory = Callable[..., nn.Module]


def _register(
    name: str, dataset: str, input_shape: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...]
) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        MODELS.register(name)(ModelInfo(name, factory, dataset, input_shape, 10, mean, std))
        return factory

    return add


def model_info(name: str) -> ModelInfo:
    """Registry entry for ``name`` (``ValueError`` listing the known names if unknown).

    Args:
        name: a registered net.

    Returns:
        Its :class:`ModelInfo`.
    """
    return MODELS.get(name)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """A freshly initialised reference net, with its ``Normalize`` layer first.

    Args:
        name: one of ``MODELS.names()``: ``mnist_cnn``, ``cifar_small``, ``cifar_resnet18``.
        kwargs: passed to the factory (e.g. ``num_classes``).

    Returns:
        The net, in train mode.
    """
    info = MODELS.get(name)
    return nn.Sequential(Normalize(info.mean, info.std), info.factory(**kwargs))


def check_input_shape(arch: str, image_shape: Sequence[int], *, source: str = "the data") -> None:
    """Refuse images a registered net cannot take, before any training or evaluation.

    Args:
        arch: a registered name (``MODELS.names()``).
        image_shape: ``(C, H, W)`` of the images, e.g. ``dataset.images.shape[1:]``.
        source: how the message names where the images come from (``"data set 'mnist'"``).

    Raises:
        ValueError: the channels or the size differ from the arch's ``input_shape``.
    """
    info = MODELS.get(arch)
    shape = tuple(int(d) for d in image_shape)
    if shape != info.input_shape:
        c, h, w = info.input_shape
        raise ValueError(
            f"arch {arch!r} takes {c}x{h}x{w} images ({info.dataset}) but {source} has "
            f"{'x'.join(map(str, shape))}; choose an arch made for it: "
            + ", ".join(f"{m.name} ({'x'.join(map(str, m.input_shape))})" for m in map(MODELS.get, MODELS.names()))
        )


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


@_register("mnist_cnn", "mnist", (1, 28, 28), MNIST_MEAN, MNIST_STD)
def mnist_cnn(num_classes: int = 10) -> nn.Module:
    """Small MNIST CNN: two 3x3 conv blocks with pooling, one hidden dense layer (~99 % test)."""
    return nn.Sequential(
        *_conv_bn(1, 32), nn.MaxPool2d(2),  # 14 x 14
        *_conv_bn(32, 64), nn.MaxPool2d(2),  # 7 x 7
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )


@_register("cifar_small", "cifar10", (3, 32, 32), CIFAR_MEAN, CIFAR_STD)
def cifar_small(num_classes: int = 10) -> nn.Module:
    """Fast CIFAR-10 net for CPU tests: three conv-BN-ReLU-pool stages (32, 64, 128 channels)."""
    return nn.Sequential(
        *_conv_bn(3, 32), nn.MaxPool2d(2),  # 16
        *_conv_bn(32, 64), nn.MaxPool2d(2),  # 8
        *_conv_bn(64, 128), nn.MaxPool2d(2),  # 4
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(128, num_classes),
    )


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32 x 32 inputs (3x3 stem, no max-pool; He et al. 1512.03385)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 64))
        widths, strides = (64, 128, 256, 512), (1, 2, 2, 2)
        layers, c_in = [], 64
        for width, stride in zip(widths, strides):
            layers += [_BasicBlock(c_in, width, stride), _BasicBlock(width, width, 1)]
            c_in = width
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


@_register("cifar_resnet18", "cifar10", (3, 32, 32), CIFAR_MEAN, CIFAR_STD)
def cifar_resnet18(num_classes: int = 10) -> nn.Module:
    """ResNet-18 for CIFAR-10 (32 x 32)."""
    return ResNet18(num_classes)


class PatchWhitening(nn.Module):
    """Frozen patch-whitening convolution, the first layer of airbench-class nets (Jordan 2404.00498).

    Its filters are the eigenvectors of the (uncentred) covariance of the ``k x k`` patches of
    training images, each divided by ``sqrt(eigenvalue + eps)``, and their negatives: ``2 C k^2``
    output channels, no padding. The weights are a buffer, never trained (so kernel smoothing and
    the kernel-spectrum tools, which look for ``nn.Conv2d``, start at the first trainable conv);
    the bias is a trainable parameter. :meth:`fit` sets the filters from data before training.

    Args:
        in_channels: ``C``.
        kernel_size: ``k`` (2 in airbench).
        eps: added to the eigenvalues before the square root.

    Shape:
        ``[N, C, H, W] -> [N, 2 C k^2, H - k + 1, W - k + 1]``, computed in float32 (float64 for
        float64 inputs) even under autocast.
    """

    def __init__(self, in_channels: int = 3, kernel_size: int = 2, eps: float = 5e-4) -> None:
        super().__init__()
        k = kernel_size
        self.eps = float(eps)
        self.register_buffer("weight", torch.zeros(2 * in_channels * k * k, in_channels, k, k))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.bias = nn.Parameter(torch.zeros(2 * in_channels * k * k))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Set the filters from the patches of ``x`` ``[N, C, H, W]`` (the inputs this layer sees)."""
        c, k = self.weight.shape[1], self.weight.shape[-1]
        patches = x.float().unfold(2, k, 1).unfold(3, k, 1)  # [N, C, H', W', k, k]
        patches = rearrange(patches, "n c h w kh kw -> (n h w) (c kh kw)")
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        filters = rearrange(eigenvectors.T.flip(0), "o (c kh kw) -> o c kh kw", c=c, kh=k, kw=k)
        filters = filters / torch.sqrt(eigenvalues.flip(0) + self.eps).view(-1, 1, 1, 1)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # At least float32, autocast or not: the filters of the smallest eigenvalues scale their
        # patch components up by as much as 1/sqrt(eps) (about 45x), so bf16's rounding of the
        # inputs (2^-8 relative) became up to 14 % noise on the highest-frequency channels of a
        # trained net (measured on 256 CIFAR-10 test images). The layer is 3 -> 24 channels: the
        # cost is nil. float64 inputs stay float64.
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            return F.conv2d(x.to(dtype), self.weight.to(dtype), self.bias.to(dtype))


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.4g}"


def _fast_conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:c_in])  # the first c_in filters start as the identity
    return conv


def _fast_norm(channels: int) -> nn.BatchNorm2d:
    # airbench's BatchNorm: running-average momentum 0.6 in its convention (0.4 in torch's), a
    # fixed scale of 1 (only the bias trains), eps 1e-12.
    norm = nn.BatchNorm2d(channels, momentum=0.4, eps=1e-12)
    norm.weight.requires_grad_(False)
    return norm


def _fast_group(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        _fast_conv(c_in, c_out), nn.MaxPool2d(2), _fast_norm(c_out), nn.GELU(),
        _fast_conv(c_out, c_out), _fast_norm(c_out), nn.GELU(),
    )


@_register("cifar_fast", "cifar10", (3, 32, 32), CIFAR_MEAN, CIFAR_STD)
def cifar_fast(num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256)) -> nn.Module:
    """The airbench94 network class (Jordan 2404.00498), written from its published description.

    A frozen 2 x 2 :class:`PatchWhitening` layer (24 channels) and GELU, three conv groups (conv,
    max-pool, BatchNorm, GELU, conv, BatchNorm, GELU; widths 64, 256, 256; identity-initialised
    convs), a 3 x 3 max-pool, a linear head without bias and a fixed 1/9 output scale. About 2 M
    parameters; about 94 % on CIFAR-10 after 10 epochs of the ``cifar_fast`` recipe.
    """
    w1, w2, w3 = widths
    return nn.Sequential(
        PatchWhitening(3, 2), nn.GELU(),
        _fast_group(24, w1), _fast_group(w1, w2), _fast_group(w2, w3),  # 31 -> 15 -> 7 -> 3
        nn.MaxPool2d(3), nn.Flatten(),
        nn.Linear(w3, num_classes, bias=False), _Scale(1 / 9),
    )


@torch.no_grad()
def fit_whitening(model: nn.Module, x: torch.Tensor) -> int:
    """Fit every not-yet-fitted :class:`PatchWhitening` layer of ``model`` on the inputs it sees for ``x``.

    Runs ``model`` on ``x`` ``[N, C, H, W]`` (in its bounds) only up to each such layer, so the
    layer is fitted on what the layers before it (``Normalize``) make of the images. Mode restored.

    Args:
        model: the net (changed in place: its whitening layers are fitted).
        x: images ``[N, C, H, W]`` in its bounds.

    Returns:
        The number of layers fitted (0 for a model without one).
    """
    layers = [m for m in model.modules() if isinstance(m, PatchWhitening) and not bool(m.fitted)]
    for layer in layers:
        handle = layer.register_forward_pre_hook(_grab_input)
        try:
            with model_mode(model):
                model(x)
        except _StopForward as stop:
            layer.fit(stop.inputs)
        finally:
            handle.remove()
    return len(layers)


def _grab_input(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    raise _StopForward(args[0])


class _StopForward(Exception):
    """Raised by :func:`fit_whitening`'s hook with the layer's input: nothing after it needs to run."""

    def __init__(self, inputs: torch.Tensor) -> None:
        super().__init__("stopped at the layer being fitted")
        self.inputs = inputs


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``x`` ``[N, C, H, W]`` in chunks, in eval mode (mode restored).

    Args:
        model: the classifier.
        x: images ``[N, C, H, W]`` on the model's device and dtype.
        batch_size: images per forward.

    Raises:
        TypeError, ValueError: ``model`` is no module, ``x`` no finite image batch on the model's
            device and dtype, or the model returns something other than logits ``[N, classes]``.

    Returns:
        Tensor ``[N, num_classes]`` on ``x``'s device.
    """
    check_model(model)
    x = check_images(x, "x", bounds=None)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    check_same_device_dtype(model, x)
    with model_mode(model):
        chunks = []
        for chunk in x.split(batch_size):
            chunks.append(check_logits(model(chunk), chunk.shape[0]) if not chunks else model(chunk))
        return torch.cat(chunks)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``x`` ``[N, C, H, W]`` with labels ``y`` ``[N]``.

    Args:
        model: the classifier.
        x: images ``[N, C, H, W]`` in its bounds.
        y: int64 labels ``[N]``.
        batch_size: images per forward.

    Returns:
        The accuracy in [0, 1].
    """
    y = check_labels(y, check_tensor(x, "x"))
    logits = predict(model, x, batch_size=batch_size)
    check_labels(y, x, num_classes=logits.shape[1])
    return float((logits.argmax(1) == y.to(logits.device)).float().mean())


# --------------------------------------------------------------------------- checkpoints


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the weights and what is known of them.

    Args:
        state_dict: the weights.
        meta: ``arch``, ``dataset``, ``mean``, ``std``, ``bounds``, ``test_accuracy``, ``recipe``
            (the training settings) and ``bandguard_version``; unknown values are ``None``.
    """

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]

    def build(self) -> nn.Module:
        """Create the registered ``arch`` and load the weights into it (eval mode)."""
        arch = self.meta.get("arch")
        if arch is None:
            raise ValueError(
                "checkpoint names no arch; pass one, e.g. load_model('ckpt.pt', arch='mnist_cnn')"
            )
        model = create_model(arch)
        _load_state(model, self.state_dict, arch)
        return model.eval()


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    arch: str | None = None,
    dataset: str | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    test_accuracy: float | None = None,
    recipe: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s state dict and metadata to ``path`` atomically (temp file + rename).

    The metadata holds only plain types (str, numbers, lists, dicts), so the file loads with
    ``weights_only=True``. Normalization constants are read from the model's ``Normalize`` layer.

    Args:
        path: the file (with ``save_checkpoint``; ``str`` or any ``os.PathLike``).
        model: the network whose state dict is saved.
        arch: its registered arch, so :func:`load_model` can rebuild it.
        dataset: the data set it was trained on.
        bounds: its input bounds.
        test_accuracy: its clean test accuracy, if measured.
        recipe: the training settings.
        extra: further plain metadata.

    Returns:
        ``path`` as a ``Path``.
    """
    payload = checkpoint_payload(
        model, arch=arch, dataset=dataset, bounds=bounds, test_accuracy=test_accuracy,
        recipe=recipe, extra=extra,
    )
    return torch_save_atomic(payload, path)


def checkpoint_payload(
    model: nn.Module,
    *,
    arch: str | None = None,
    dataset: str | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    test_accuracy: float | None = None,
    recipe: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict :func:`save_checkpoint` writes: ``{"state_dict": ..., "meta": ...}`` on the CPU.

    Args:
        model: the network whose state dict is saved.
        arch: its registered arch, so :func:`load_model` can rebuild it.
        dataset: the data set it was trained on.
        bounds: its input bounds.
        test_accuracy: its clean test accuracy, if measured.
        recipe: the training settings.
        extra: further plain metadata.

    Returns:
        ``{"state_dict": ..., "meta": ...}`` of plain types and CPU tensors.
    """
    check_model(model)
    norm = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "dataset": dataset,
        "mean": norm.mean.flatten().tolist() if norm is not None else None,
        "std": norm.std.flatten().tolist() if norm is not None else None,
        "bounds": list(check_bounds(bounds)),
        "test_accuracy": None if test_accuracy is None else float(test_accuracy),
        "recipe": _plain(recipe or {}),
        "bandguard_version": __version__,
        **_plain(extra or {}),
    }
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "meta": meta}


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (or a bare state dict) safely.

    Args:
        path: the file, a ``str`` or any ``os.PathLike``.

    Returns:
        The :class:`Checkpoint`.

    Raises:
        FileNotFoundError: no such file (the message hints at the right call when ``path`` looks
            like an arch name or a ``package.module:function``).
        ValueError: a folder, or a file that is corrupt, truncated, holds objects other than
            tensors and plain types (refused by ``weights_only=True``), or is no state dict.
    """
    path = check_path(path, "path")
    if path.is_dir():
        raise ValueError(f"checkpoint {str(path)!r} is a folder; expected a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint {str(path)!r}{_not_found_hint(str(path))}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"checkpoint {str(path)!r} is unsafe or corrupt: weights_only loading refused it ({first})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"checkpoint {str(path)!r} is corrupt or truncated: {first}") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        state, meta = obj["state_dict"], obj.get("meta") or {}
        if not isinstance(meta, dict):
            raise ValueError(f"checkpoint {str(path)!r} has metadata of type {type(meta).__name__}, expected a dict")
        meta = dict(meta)
    elif isinstance(obj, dict) and any(isinstance(obj.get(k), dict) for k in _WRAPPED_STATE_KEYS):
        # Other trainers' layouts: {"model": state_dict, "optimizer": ..., "epoch": ...} and kin.
        state, meta = next(obj[k] for k in _WRAPPED_STATE_KEYS if isinstance(obj.get(k), dict)), {}
    else:
        state, meta = obj, {}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {str(path)!r} holds no state dict of tensors")
    for key in ("arch", "dataset", "mean", "std", "bounds", "test_accuracy", "recipe"):
        meta.setdefault(key, None)
    return Checkpoint(state_dict=state, meta=meta)


def _not_found_hint(text: str) -> str:
    if text in MODELS:
        return (f"; {text!r} is an architecture name, not a checkpoint: create_model({text!r}) builds an "
                f"untrained one")
    if _CODE_TARGET.fullmatch(text):
        return (f"; a checkpoint path is never run as code: to build a model from Python code use "
                f"model_from_code({text!r}) (CLI: --model-code {text})")
    return ""


def load_model(path: str | os.PathLike[str], *, arch: str | None = None) -> nn.Module:
    """Build a model from a checkpoint file, in eval mode. Reads the file only; never imports code.

    Args:
        path: a checkpoint written by :func:`save_checkpoint` (its metadata names the arch), or a
            bare state dict of a registered arch; ``str`` or any ``os.PathLike``. The string form
            ``"mnist_cnn:ckpt.pt"`` is short for ``("ckpt.pt", arch="mnist_cnn")`` when the part
            before the colon is a registered arch.
        arch: the registered arch to load the weights into (overrides the checkpoint's).

    Returns:
        The model, in eval mode.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: corrupt or unsafe file, unknown arch, or weights that do not fit the arch.

    Example:
        >>> model = load_model("mnist.pt")
        >>> model = load_model(Path("weights.pt"), arch="cifar_small")
    """
    path_ = check_path(path, "path")
    if arch is not None:
        MODELS.get(arch)
    if isinstance(path, str) and not path_.exists():
        head, sep, tail = path.partition(":")
        if sep and head in MODELS and tail:
            if arch is not None and arch != head:
                raise ValueError(f"path {path!r} names arch {head!r} but arch={arch!r} was given")
            arch, path_ = head, Path(tail)
    ckpt = load_checkpoint(path_)
    if arch is None:
        return ckpt.build()
    model = create_model(arch)
    _load_state(model, ckpt.state_dict, arch)
    return model.eval()


# ``package.module:function``: dotted identifiers, one colon, one attribute name; nothing else.
_CODE_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def model_from_code(target: str, **kwargs: Any) -> nn.Module:
    """Build a model by importing ``package.module`` and calling ``function(**kwargs)``. RUNS CODE.

    This is the explicit way to load a model defined in Python: like ``torch.hub.load`` with
    ``trust_repo=True``, it imports the module (running its top level) and calls the function, so
    use it only with code you trust. A checkpoint path is never read this way (see
    :func:`load_model`).

    Args:
        target: ``"package.module:function"`` (dotted module path, one colon, one name).
        kwargs: passed to the function.

    Returns:
        The ``nn.Module`` the function returned, in eval mode.

    Raises:
        ValueError: ``target`` is not of that form, or the module or function does not exist.
        TypeError: the attribute is not callable or the result is not an ``nn.Module``.

    Example:
        >>> model = model_from_code("torchvision.models:resnet18", num_classes=10)
    """
    if not isinstance(target, str):
        raise TypeError(f"target must be a str 'package.module:function', got {type(target).__name__}")
    if not _CODE_TARGET.fullmatch(target):
        raise ValueError(
            f"target must have the form 'package.module:function' (e.g. 'mypkg.nets:build'), got {target!r}"
        )
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or module_name
        raise ValueError(
            f"target {target!r}: no module named {missing!r} (is it installed or on PYTHONPATH?)"
        ) from None
    if not hasattr(module, attr):
        raise ValueError(f"target {target!r}: module {module_name!r} has no attribute {attr!r}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise TypeError(f"target {target!r}: {attr!r} is a {type(fn).__name__}, not a callable")
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"target {target!r} returned {type(model).__name__}, expected an nn.Module")
    return model.eval()


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"checkpoint does not fit arch {arch!r} (wrong arch or changed network): {first}"
        ) from None


def _plain(obj: Any) -> Any:
    """Metadata as plain types only, so ``weights_only`` loading accepts it."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    return str(obj)


# --------------------------------------------------------------------------- models people use

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet's per-channel mean (torchvision's and RobustBench's normalization)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet's per-channel standard deviation."""

#: Keys under which other trainers store the state dict beside their own bookkeeping, tried in order.
_WRAPPED_STATE_KEYS = ("model", "model_state_dict", "state_dict_ema", "net", "model_state")

#: Prefixes wrappers add to every key: DataParallel/DDP (``module.``), ``torch.compile`` (``_orig_mod.``).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load the weights of a checkpoint file into ``model`` (strict), whatever layout wrote them.

    Reads with ``weights_only=True`` (:func:`load_checkpoint`): a bandguard checkpoint, a bare state
    dict, or a trainer's dict holding it under ``"state_dict"``, ``"model"``, ``"model_state_dict"``,
    ``"state_dict_ema"``, ``"net"`` or ``"model_state"``; ``module.`` (DataParallel/DDP) and
    ``_orig_mod.`` (``torch.compile``) prefixes are dropped. A model built as ``Sequential(Normalize,
    net)`` (every bandguard model) also takes the state dict of ``net`` alone, as torchvision and
    most papers save it: the normalization constants then stay the model's own.

    Args:
        model: the module to fill (changed in place).
        path: the checkpoint file.

    Returns:
        ``model``, in eval mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsafe, corrupt, or weights that fit neither ``model`` nor its inner net (the
            message names the first keys that differ).
    """
    check_model(model)
    state = _strip_wrappers(load_checkpoint(path).state_dict)
    targets = [model]
    if isinstance(model, nn.Sequential) and len(model) == 2 and isinstance(model[0], Normalize):
        targets.append(model[1])
    for target in targets:
        if set(state) == set(target.state_dict()):
            try:
                target.load_state_dict(state, strict=True)
            except RuntimeError as err:
                lines = [line.strip() for line in str(err).splitlines() if line.strip()]
                detail = next((line for line in lines if "size mismatch" in line), lines[-1] if lines else "")
                raise ValueError(
                    f"checkpoint {str(path)!r} does not fit {type(target).__name__}: {detail} "
                    "(wrong num_classes or architecture?)"
                ) from None
            return model.eval()
    expected = set(targets[-1].state_dict())
    missing, unexpected = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
    raise ValueError(
        f"checkpoint {str(path)!r} does not fit {type(targets[-1]).__name__}: missing keys {missing}, "
        f"unexpected keys {unexpected} (wrong architecture, num_classes or checkpoint?)"
    )


def load_pretrained(
    arch: str, path: str | os.PathLike[str] | None = None, *, num_classes: int | None = None
) -> nn.Module:
    """A registered arch with ``num_classes`` outputs and the weights of any state-dict checkpoint.

    Unlike :func:`load_model` (bandguard checkpoints of 10-class nets), this builds ``arch`` with
    any number of classes and takes the layouts :func:`load_weights` reads, with or without the
    ``Normalize`` layer's entries. Inputs in ``[0, 1]``, normalization inside.

    Args:
        arch: a registered name (``MODELS.names()``).
        path: the checkpoint, or ``None`` for fresh weights.
        num_classes: outputs of the head; ``None`` keeps the arch's (10).

    Returns:
        The model in eval mode.

    Example:
        >>> model = load_pretrained("cifar_resnet18", "c100.pt", num_classes=100)
    """
    MODELS.get(arch)
    kwargs = {} if num_classes is None else {"num_classes": check_int(num_classes, "num_classes", minimum=1)}
    model = create_model(arch, **kwargs)
    return load_weights(model, path) if path is not None else model.eval()


def torchvision_model(
    name: str,
    *,
    num_classes: int = 1000,
    weights: str | os.PathLike[str] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> nn.Module:
    """A torchvision classifier behind its normalization: inputs in ``[0, 1]``, as RobustBench's.

    Builds ``torchvision.models.get_model(name, weights=None, num_classes=num_classes)`` (never
    downloads) and puts ``Normalize(mean, std)`` in front; ``weights`` is a local file, e.g. one of
    torchvision's ``.pth`` files, read by :func:`load_weights` (the bare net's keys or the whole
    model's).

    Args:
        name: a torchvision model name (``torchvision.models.list_models()``), e.g. ``"resnet50"``.
        num_classes: outputs of the head.
        weights: a local checkpoint file, or ``None`` for random initialisation.
        mean, std: the normalization (default ImageNet's).

    Returns:
        ``nn.Sequential(Normalize(mean, std), net)`` in eval mode.

    Example:
        >>> model = torchvision_model("resnet50", weights="resnet50-11ad3fa6.pth")
    """
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ValueError(f"unknown torchvision model {name!r}; expected one of {', '.join(sorted(known))}")
    net = torchvision.models.get_model(name, weights=None, num_classes=check_int(num_classes, "num_classes",
                                                                                  minimum=1))
    model = nn.Sequential(Normalize(mean, std), net)
    return load_weights(model, weights) if weights is not None else model.eval()


def _robustbench_loader() -> Callable[..., nn.Module]:
    """``robustbench.utils.load_model``, imported.

    robustbench 1.1.1 on PyPI depends on ``pyautoattack`` (AutoAttack as published on PyPI) but
    imports it as ``autoattack`` (the name AutoAttack's repository installs), at the top of
    ``robustbench.eval`` only. Where that import fails and ``pyautoattack`` is installed, it stands
    in under that name while robustbench is imported, and ``sys.modules`` is restored afterwards
    (loading a model never runs AutoAttack).
    """
    hint = ("robustbench_model needs the robustbench package (pip install 'bandguard[robustbench]', which "
            "also pins setuptools < 81 for its pkg_resources)")
    try:
        from robustbench.utils import load_model

        return load_model  # type: ignore[no-any-return]
    except ImportError as err:
        if err.name not in ("autoattack", "autoattack.state") or importlib.util.find_spec("pyautoattack") is None:
            raise ImportError(f"{hint}; importing it failed: {err}") from err
    for name in [m for m in sys.modules if m == "robustbench" or m.startswith("robustbench.")]:
        del sys.modules[name]  # the half-imported package, so the import below starts afresh
    stand_in = {"autoattack": importlib.import_module("pyautoattack"),
                "autoattack.state": importlib.import_module("pyautoattack.state")}
    sys.modules.update(stand_in)
    try:
        from robustbench.utils import load_model
    except ImportError as err:
        raise ImportError(f"{hint}; importing it failed: {err}") from err
    finally:
        for name, module in stand_in.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return load_model  # type: ignore[no-any-return]


def robustbench_model(
    name: str,
    *,
    dataset: str = "cifar10",
    threat_model: str = "Linf",
    model_dir: str | os.PathLike[str] = "models",
) -> nn.Module:
    """A RobustBench model through the ``robustbench`` package's own ``load_model``, read offline.

    RobustBench keeps its checkpoints at ``model_dir/<dataset>/<threat_model>/<name>.pt`` and
    downloads a missing one; this reads only a file already there (``FileNotFoundError``
    otherwise), so nothing is fetched. The model is RobustBench's own class with its own
    checkpoint handling; like every RobustBench model it takes inputs in ``[0, 1]`` with any
    normalization inside. Models that RobustBench serves through timm are fetched by timm, not
    read from ``model_dir``: use :func:`load_weights` on timm's model for those.

    Args:
        name: the model zoo name, e.g. ``"Standard"``, ``"Wong2020Fast"``.
        dataset: ``"cifar10"``, ``"cifar100"`` or ``"imagenet"``.
        threat_model: ``"Linf"``, ``"L2"`` or ``"corruptions"``.
        model_dir: the local model directory.

    Returns:
        The model in eval mode.

    Raises:
        ImportError: ``robustbench`` is not installed (``pip install 'bandguard[robustbench]'``).
        FileNotFoundError: no checkpoint at the expected place.
    """
    robustbench_load = _robustbench_loader()
    path = Path(model_dir) / dataset / threat_model / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no RobustBench checkpoint at {str(path)!r} (layout model_dir/<dataset>/<threat_model>/<name>.pt); "
            "bandguard never downloads: fetch it with robustbench where a network is available"
        )
    return robustbench_load(model_name=name, model_dir=str(model_dir), dataset=dataset,
                            threat_model=threat_model).eval()
