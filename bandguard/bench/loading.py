"""Loading what a benchmark evaluates: devices, models, defenses and samples.

The library's one place for these steps, used by both entry points of the harness and by the CLI
(which only parses arguments and prints): ``"auto"`` devices, models named by a spec, the one-sample
probe that fails early on a model that does not fit the data, defenses by spec string, and the
fixed sample subset of a spec.
"""

from __future__ import annotations

import torch
from torch import nn

from bandguard._checks import check_device, check_labels, check_model_input, check_model_output
from bandguard._modes import model_mode
from bandguard.bench.spec import NO_DEFENSE, BenchSpec, ModelSpec
from bandguard.data.stream import FolderSource, Samples, TensorSamples, as_samples

__all__ = ["build_defense", "check_model_fits", "folder_source", "load_model", "load_samples", "load_source",
           "resolve_device"]


def resolve_device(name: str | None, what: str = "device") -> torch.device:
    """``None`` or ``"auto"`` -> CUDA if present, else CPU; anything else checked as a torch device
    (an error names ``what``, e.g. ``"--device"``)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(name, what)


def load_model(spec: ModelSpec, device: torch.device) -> nn.Module:
    """The model a :class:`ModelSpec` names, in eval mode on ``device``: the one place that builds
    one (the bench and the CLI alike). Inputs in ``[0, 1]``, normalization inside."""
    from bandguard import models

    if spec.reference is not None:
        from bandguard.bench.zoo import reference_model

        model, _ = reference_model(spec.reference, limit=spec.limit, device=device)
        return model.eval()
    if spec.robustbench is not None:
        model = models.robustbench_model(spec.robustbench, dataset=str(spec.dataset),
                                         threat_model=spec.threat_model or "Linf",
                                         model_dir=spec.model_dir or "models")
    elif spec.torchvision is not None:
        model = models.torchvision_model(spec.torchvision, num_classes=spec.num_classes or 1000,
                                         weights=spec.checkpoint)
    elif spec.code is not None:  # the explicit code form: runs package.module:function(**kwargs)
        model = models.model_from_code(spec.code, **dict(spec.kwargs))
        if spec.checkpoint is not None:
            models.load_weights(model, spec.checkpoint)
    elif spec.num_classes is not None:
        model = models.load_pretrained(str(spec.arch), spec.checkpoint, num_classes=spec.num_classes)
    else:
        model = models.load_model(str(spec.checkpoint), arch=spec.arch)
    return model.to(device).eval()


def check_model_fits(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, device: torch.device,
                     labels: str = "the data set's labels", what: str = "model", data: str = "") -> int:
    """One forward on one sample, so a model that does not take the data, returns no logits
    ``[N, classes]`` (a tuple, a 1-D output, probabilities) or has fewer classes than the labels
    (called ``labels`` in the error) fails with a clear error before any work runs.

    Args:
        model: the classifier; x: images ``[N, C, H, W]``; y: labels ``[N]`` or ``None`` (not checked).
        what: the model's name in errors (``"--model"`` from the CLI); data: the data set's name.

    Returns:
        The model's number of classes.
    """
    xb = check_model_input(model, x[:1].to(device), bounds=None, model_name=what)
    try:
        with model_mode(model), torch.inference_mode():
            out = model(xb)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{what} does not take {data + ' ' if data else ''}images of shape "
                         f"{tuple(x.shape[1:])}: {first}") from None
    logits = check_model_output(out, n=1, name=f"{what} output")
    if y is not None:
        check_labels(y, None, labels, num_classes=logits.shape[1])
    return int(logits.shape[1])


def build_defense(spec: str, model: nn.Module) -> nn.Module:
    """The defended model a defense spec string names (``"none"``: the model itself)."""
    if spec == NO_DEFENSE:
        return model
    from bandguard.defenses import build_defense as build

    return build(spec, model)


def load_samples(spec: BenchSpec) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(x [N, C, H, W] float32 in [0, 1], y [N], num_classes)`` of the spec's fixed subset (CPU)."""
    from bandguard.data import load_dataset
    from bandguard.training import subset_indices

    data = load_dataset(spec.dataset, spec.split)
    idx = subset_indices(len(data), spec.n or None, spec.seed)  # spec.n == 0: every image
    x = data.images[idx].to(torch.float32).div_(255)
    return x, data.labels[idx].clone(), int(data.num_classes)


def folder_source(spec: BenchSpec) -> FolderSource:
    """The streamed ImageFolder of a spec with a ``[data]`` table, cut to the spec's samples.

    Args:
        spec: a spec whose ``data`` is set (``dataset`` is then the folder).

    Returns:
        A :class:`~bandguard.data.FolderSource` of the index list's first ``n`` entries or,
        without a list, of the same seeded subset :func:`load_samples` draws, in the same order;
        items ``[C, H, W]`` float32 in ``[0, 1]``.
    """
    from bandguard.training import subset_indices

    if spec.data is None:
        raise ValueError("the spec has no [data] table: its data set loads into memory (load_samples)")
    d = spec.data
    source = FolderSource(spec.dataset, spec.split, resize=d.resize, center_crop=d.center_crop, index=d.index)
    if d.index is not None:
        return source.subset(range(min(spec.n, len(source)))) if spec.n else source
    return source.subset(subset_indices(len(source), spec.n or None, spec.seed))


def load_source(spec: BenchSpec, *, pin_memory: bool = False) -> tuple[Samples, int]:
    """The samples a spec evaluates and the data set's number of classes.

    Args:
        spec: the benchmark spec.
        pin_memory: pin the images (for a CUDA device).

    Returns:
        ``(samples, num_classes)``: without a ``[data]`` table the spec's subset in memory
        (:func:`load_samples`, ``[N, C, H, W]``); with one, a stream of :func:`folder_source`
        decoded by ``data.workers`` processes, a few batches alive at a time.
    """
    if spec.data is None:
        x, y, num_classes = load_samples(spec)
        if pin_memory:
            x, y = x.pin_memory(), y.pin_memory()
        return TensorSamples(x, y), num_classes
    source = folder_source(spec)
    return as_samples(source, num_workers=spec.data.workers, pin_memory=pin_memory), source.num_classes
