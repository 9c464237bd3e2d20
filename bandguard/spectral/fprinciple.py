"""Frequency principle monitor: does the network fit low frequencies of the target first?

Xu et al., "Frequency Principle: Fourier Analysis Sheds Light on Deep Neural Networks"
(arXiv 1901.06523; also 1807.01251), the *filtering method* for high-dimensional inputs: on a fixed
reference set of ``n`` training inputs, the Gaussian kernel

    G_ij = exp(-|x_i - x_j|^2 / (2 delta)),   K = G / row sums    (delta is a variance)

smooths any function sampled on the set, so ``f_low = K f`` is its low-frequency part and
``f - f_low`` its high-frequency part. With one-hot labels ``y`` and softmax outputs ``h``::

    e_low  = |K y - K h|_F / |K y|_F
    e_high = |(y - K y) - (h - K h)|_F / |y - K y|_F

recorded every epoch for several deltas. The principle shows as ``e_low`` falling earlier than
``e_high``. A delta far below the squared nearest-neighbour distance makes ``K`` the identity
(``y - K y`` is then almost zero and ``e_high`` is noise): the monitor warns.

The *projection method* (the paper's 1-D view, also the setting of 1807.01251's toy fits) looks at
one direction instead: the inputs are projected on their first principal component ``p``, and the
non-uniform DFT ``F[f](k) = (1/n) sum_i f(x_i) exp(-i k p_i)`` of the labels and of the outputs is
compared frequency by frequency, ``|F[h](k) - F[y](k)| / |F[y](k)|``, at the peaks of the label
spectrum (:func:`principal_projection`, :func:`nonuniform_dft`, :func:`projection_errors`). For
1-D inputs ``p`` is the input itself, centred, so the errors are those of the plain DFT.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from bandguard._checks import (
    check_bool,
    check_finite,
    check_images,
    check_int,
    check_labels,
    check_positive,
    check_tensor,
    is_scalar_number,
)
from bandguard._io import write_json_atomic
from bandguard._modes import model_mode

__all__ = [
    "FPrincipleMonitor",
    "FPrincipleResult",
    "frequency_errors",
    "frequency_residuals",
    "gaussian_filter_kernel",
    "nonuniform_dft",
    "principal_projection",
    "projection_errors",
    "squared_distances",
]

logger = logging.getLogger(__name__)

#: Largest reference set: ``K`` is ``n x n`` per delta (5,000 -> 100 MB each in float32).
MAX_REFERENCE = 5000


def squared_distances(x: torch.Tensor, *, chunk: int = 1024) -> torch.Tensor:
    """Pairwise squared Euclidean distances of the flattened inputs, ``chunk`` rows at a time.

    Args:
        x: inputs ``[n, ...]``, flattened per sample.
        chunk: rows per block (memory ``chunk * n``).

    Returns:
        Tensor ``[n, n]``, zero diagonal, non-negative, in float64 for the exponent's sake.
    """
    flat = rearrange(x, "n ... -> n (...)").double()
    sq = (flat**2).sum(dim=1)
    rows = []
    for start in range(0, flat.shape[0], chunk):
        block = flat[start : start + chunk]
        rows.append((sq[start : start + chunk, None] + sq[None, :] - 2 * block @ flat.T).clamp_min(0))
    dist = torch.cat(rows)
    dist.fill_diagonal_(0)
    return dist


def gaussian_filter_kernel(distances: torch.Tensor, delta: float) -> torch.Tensor:
    """Row-normalised Gaussian kernel ``K`` from squared distances (Xu et al. 1901.06523).

    Args:
        distances: squared distances ``[n, n]`` with zero diagonal.
        delta: the kernel's variance (``G = exp(-d / (2 delta))``).

    Returns:
        Tensor ``[n, n]`` whose rows sum to one.
    """
    # The diagonal is exp(0) = 1, so no row underflows to all zeros.
    g = torch.exp(-distances / (2 * delta))
    return g / g.sum(dim=1, keepdim=True)


def frequency_residuals(
    kernel: torch.Tensor, target: torch.Tensor, output: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample squared low- and high-frequency residuals of ``output`` against ``target``.

    ``low_i = |(K (h - y))_i|^2`` and ``high_i = |((I - K)(h - y))_i|^2``: summed over the samples
    they are the squared numerators of ``e_low`` and ``e_high`` (:func:`frequency_errors`), so a
    bootstrap over the reference samples can resample them (the kernel itself stays fixed).

    Args:
        kernel: row-normalised kernels ``[..., n, n]`` (one per delta).
        target: ``[n, c]`` (one-hot labels).
        output: ``[n, c]`` (softmax outputs).

    Returns:
        ``(low, high)``, each ``[..., n]``.
    """
    diff = output - target
    low = kernel @ diff
    return low.pow(2).sum(-1), (diff - low).pow(2).sum(-1)


def frequency_errors(
    kernel: torch.Tensor, target: torch.Tensor, output: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative low- and high-frequency errors of ``output`` against ``target`` (Xu et al.).

    Args:
        kernel: row-normalised kernels ``[..., n, n]`` (one per delta).
        target: ``[n, c]`` (one-hot labels).
        output: ``[n, c]`` (softmax outputs).

    Returns:
        ``(e_low, e_high)``, each ``[...]``.
    """
    return _relative_errors(*frequency_residuals(kernel, target, output), *_target_norms(kernel, target))


def _target_norms(kernel: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(|K y|_F, |y - K y|_F)``, each ``[...]``: the denominators of ``e_low`` and ``e_high``."""
    target_low = kernel @ target
    tiny = torch.finfo(target_low.dtype).tiny
    return (torch.linalg.matrix_norm(target_low).clamp_min(tiny),
            torch.linalg.matrix_norm(target - target_low).clamp_min(tiny))


def _relative_errors(low: torch.Tensor, high: torch.Tensor, norm_low: torch.Tensor, norm_high: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(e_low, e_high)`` from per-sample squared residuals ``[..., n]`` and the target norms ``[...]``."""
    return low.sum(-1).sqrt() / norm_low, high.sum(-1).sqrt() / norm_high


def principal_projection(x: torch.Tensor) -> torch.Tensor:
    """Coordinates of the inputs on their first principal component (Xu et al. 1901.06523).

    Args:
        x: inputs ``[n, ...]``, flattened per sample (``[n]`` is taken as ``n`` scalars).

    Returns:
        Tensor ``[n]``: the centred inputs projected on the unit direction of largest variance,
        signed so that the direction's largest-magnitude entry is positive (a fixed orientation).
        For scalar inputs this is ``x - mean(x)``.
    """
    x = check_finite(check_tensor(x, "x"), "x")
    if x.ndim == 0 or x.shape[0] < 2 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor [n, ...] with n >= 2, got {x.dtype} {tuple(x.shape)}")
    flat = rearrange(x, "n ... -> n (...)") if x.ndim > 1 else x[:, None]
    centred = flat - flat.mean(dim=0)
    if centred.shape[1] == 1:
        return centred[:, 0]
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    direction = direction * direction[direction.abs().argmax()].sign()
    return centred @ direction


def nonuniform_dft(positions: torch.Tensor, values: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """Non-uniform DFT ``F(k) = (1/n) sum_i values_i exp(-i k p_i)`` of samples at ``positions``.

    Args:
        positions: sample positions ``p`` ``[n]`` (real).
        values: samples ``[n]`` or ``[n, c]`` (one column per output).
        frequencies: angular frequencies ``k`` ``[m]`` (radians per unit of ``p``).

    Returns:
        Complex tensor ``[m]`` or ``[m, c]``. On a uniform grid ``p_i = 2 pi i / n`` and integer
        ``k`` it equals ``torch.fft.fft(values, dim=0)[k] / n``.
    """
    for name, t in (("positions", positions), ("values", values), ("frequencies", frequencies)):
        check_finite(check_tensor(t, name), name)
    if positions.ndim != 1 or frequencies.ndim != 1:
        raise ValueError(
            f"positions and frequencies must be 1-D, got {tuple(positions.shape)} and {tuple(frequencies.shape)}"
        )
    if values.ndim not in (1, 2) or values.shape[0] != positions.shape[0]:
        raise ValueError(f"values must be [n] or [n, c] with n = {positions.shape[0]}, got {tuple(values.shape)}")
    real = torch.promote_types(values.dtype, positions.dtype)
    phase = torch.outer(frequencies.to(real), positions.to(real))  # [m, n]
    basis = torch.polar(torch.ones_like(phase), -phase)
    return basis @ values.to(basis.dtype) / positions.shape[0]


def projection_errors(
    x: torch.Tensor, target: torch.Tensor, output: torch.Tensor, frequencies: torch.Tensor
) -> torch.Tensor:
    """Relative error of ``output`` against ``target`` at each frequency (projection method).

    ``|F[h](k) - F[y](k)| / |F[y](k)|`` along the inputs' first principal component
    (Xu et al. 1901.06523; for 1-D inputs, the DFT error of 1807.01251), the norm taken over the
    output columns. Pick ``frequencies`` at peaks of the target's spectrum: where ``|F[y](k)|`` is
    near zero the ratio is noise.

    Args:
        x: inputs ``[n, ...]`` (``[n]`` for scalars).
        target: ``[n]`` or ``[n, c]`` (labels, one-hot labels, a function's values).
        output: the model's outputs, the same shape.
        frequencies: angular frequencies ``[m]``, in units of the projected coordinate.

    Returns:
        Tensor ``[m]`` of relative errors (0 where the output fits that frequency exactly).
    """
    target, output = check_tensor(target, "target"), check_tensor(output, "output")
    if target.shape != output.shape:
        raise ValueError(f"output must have the target's shape {tuple(target.shape)}, got {tuple(output.shape)}")
    positions = principal_projection(x)
    spectrum_y = nonuniform_dft(positions, target, frequencies)
    spectrum_h = nonuniform_dft(positions, output, frequencies)
    if spectrum_y.ndim == 1:
        spectrum_y, spectrum_h = spectrum_y[:, None], spectrum_h[:, None]
    num = torch.linalg.vector_norm(spectrum_h - spectrum_y, dim=1)
    den = torch.linalg.vector_norm(spectrum_y, dim=1)
    return num / den.clamp_min(torch.finfo(den.dtype).tiny)


@dataclasses.dataclass(frozen=True)
class FPrincipleResult:
    """The monitor's curves.

    Attributes:
        deltas: the kernel variances, one column each.
        epochs: completed epochs at each record (0 = before training).
        e_low: ``[records][deltas]`` relative low-frequency errors.
        e_high: ``[records][deltas]`` relative high-frequency errors.
        n: reference set size.
        self_weight: mean diagonal of each ``K`` (near 1: ``K`` is the identity, degenerate).
    """

    deltas: tuple[float, ...]
    epochs: tuple[int, ...]
    e_low: tuple[tuple[float, ...], ...]
    e_high: tuple[tuple[float, ...], ...]
    n: int
    self_weight: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def first_below(self, threshold: float, part: str = "low") -> dict[float, int | None]:
        """Per delta, the first recorded epoch whose ``e_low`` (or ``e_high``) is < ``threshold``."""
        curves = self.e_low if part == "low" else self.e_high
        out: dict[float, int | None] = {}
        for j, delta in enumerate(self.deltas):
            out[delta] = next((e for e, row in zip(self.epochs, curves) if row[j] < threshold), None)
        return out


class FPrincipleMonitor:
    """Training callback recording Xu et al.'s filtering-method errors (arXiv 1901.06523).

    Pass it to the training loop's callbacks: ``on_train_begin(model)`` records the untrained model
    (epoch 0) and ``on_epoch_end(model, epoch, logs)`` records after every epoch. The model is
    evaluated in eval mode on the reference set and its mode restored. ``K`` is computed once, kept
    on the inputs' device (``len(deltas) * n * n`` floats).

    Args:
        x: reference training inputs ``[n, C, H, W]`` in [0, 1], ``n <= 5000``.
        y: their labels ``[n]`` int64.
        deltas: kernel variances, in squared-distance units of the flattened [0, 1] inputs. The
            default (3, 10, 30) spans MNIST's squared nearest-neighbour distances (about 10 to 50
            for 1,000 images); Xu et al. used 2 .. 100 on CIFAR-10, whose images lie further apart.
        num_classes: number of classes (default ``max(y) + 1``; must match the model's outputs).
        out_dir: if given, the curves are written there after every record as
            ``fprinciple.json`` (atomically).
        plot: if given with ``out_dir``, called as ``plot(result, out_dir / "fprinciple.png")``
            after every record, e.g. :func:`bandguard.spectral.plots.plot_fprinciple` (passed in,
            so this module never imports the plotting layer).
        batch_size: images per forward.
        identity_threshold: warn when the mean self-weight ``mean(diag K)`` exceeds this.
        per_sample: also keep every record's per-sample squared residuals (:meth:`residuals`), for
            bootstrap intervals over the reference samples (``2 * len(deltas) * n`` floats a record).

    Example:
        >>> monitor = FPrincipleMonitor(x_train[:1000], y_train[:1000], deltas=(5.0, 10.0))
        >>> train(model, ..., callbacks=[monitor])
        >>> monitor.result().first_below(0.5, "low")
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        deltas: Sequence[float] = (3.0, 10.0, 30.0),
        num_classes: int | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 1024,
        identity_threshold: float = 0.9,
        plot: Callable[[FPrincipleResult, Path], object] | None = None,
        per_sample: bool = False,
    ) -> None:
        x = check_images(x, "x", bounds=None)
        y = check_labels(y, x)
        if x.shape[0] > MAX_REFERENCE:
            raise ValueError(f"x must hold at most {MAX_REFERENCE} reference samples, got {x.shape[0]}")
        if x.shape[0] < 2:
            raise ValueError(f"x must hold at least 2 reference samples, got {x.shape[0]}")
        if is_scalar_number(deltas):
            deltas = [deltas]
        self.deltas = tuple(check_positive(d, "deltas") for d in deltas)
        if not self.deltas:
            raise ValueError("deltas must hold at least one value, got an empty sequence")
        self.num_classes = (
            int(y.max()) + 1 if num_classes is None else check_int(num_classes, "num_classes", minimum=2)
        )
        check_labels(y, x, num_classes=self.num_classes)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if plot is not None and not callable(plot):
            raise TypeError(f"plot must be callable (result, path), got {type(plot).__name__}")
        self.plot = plot
        self.per_sample = check_bool(per_sample, "per_sample")

        self.x = x.detach()
        self.n = x.shape[0]
        distances = squared_distances(self.x)
        kernels = torch.stack([gaussian_filter_kernel(distances, d) for d in self.deltas])
        self.kernel = kernels.to(x.dtype)  # [D, n, n] on x's device
        self.target = F.one_hot(y.to(x.device), self.num_classes).to(x.dtype)
        self._target_norms = _target_norms(self.kernel, self.target)  # fixed: computed once, not per record
        self.self_weight = tuple(float(s) for s in kernels.diagonal(dim1=-2, dim2=-1).mean(dim=-1))
        for delta, weight in zip(self.deltas, self.self_weight):
            if weight > identity_threshold:
                warnings.warn(
                    f"FPrincipleMonitor: delta={delta} is degenerate: the kernel is close to the "
                    f"identity (mean self-weight {weight:.3f} > {identity_threshold}), so the "
                    "high-frequency part of the labels is nearly everything and e_high is noise; "
                    "use a larger delta",
                    stacklevel=2,
                )
            elif weight < 2.0 / self.n:
                warnings.warn(
                    f"FPrincipleMonitor: delta={delta} is degenerate: the kernel averages almost "
                    f"uniformly (mean self-weight {weight:.2e}), so the low part is only the mean; "
                    "use a smaller delta",
                    stacklevel=2,
                )
        self._epochs: list[int] = []
        self._low: list[tuple[float, ...]] = []
        self._high: list[tuple[float, ...]] = []
        self._completed = 0
        self._residuals: list[tuple[torch.Tensor, torch.Tensor]] = []

    # ----------------------------------------------------------------------- recording

    def record(self, model: nn.Module, epoch: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Evaluate ``model`` on the reference set and append ``(e_low, e_high)`` at ``epoch``."""
        with model_mode(model), torch.inference_mode():
            logits = torch.cat([model(chunk) for chunk in self.x.split(self.batch_size)])
        if logits.shape != (self.n, self.num_classes):
            raise ValueError(
                f"model must return logits [{self.n}, {self.num_classes}], got {tuple(logits.shape)}"
            )
        probs = logits.softmax(dim=1).to(self.kernel.dtype)
        low_res, high_res = frequency_residuals(self.kernel, self.target, probs)
        e_low, e_high = _relative_errors(low_res, high_res, *self._target_norms)
        if self.per_sample:
            self._residuals.append((low_res.cpu(), high_res.cpu()))
        low, high = tuple(e_low.tolist()), tuple(e_high.tolist())
        self._epochs.append(epoch)
        self._low.append(low)
        self._high.append(high)
        logger.info("F-principle epoch %d: e_low %s e_high %s", epoch, low, high)
        if self.out_dir is not None:
            self.save(self.out_dir)
        return low, high

    def on_train_begin(self, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        """Record the untrained model as epoch 0."""
        self.record(model, self._completed)

    def on_epoch_end(
        self, model: nn.Module, epoch: int | None = None, logs: Mapping[str, Any] | None = None
    ) -> None:
        """Record after an epoch; the x-axis counts completed epochs (``epoch`` is only logged)."""
        self._completed += 1
        self.record(model, self._completed)

    # ----------------------------------------------------------------------- output

    def result(self) -> FPrincipleResult:
        """The curves recorded so far."""
        return FPrincipleResult(
            deltas=self.deltas,
            epochs=tuple(self._epochs),
            e_low=tuple(self._low),
            e_high=tuple(self._high),
            n=self.n,
            self_weight=self.self_weight,
        )

    def residuals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample squared residuals of every record (``per_sample=True``): ``(low, high)``, each
        ``[records, deltas, n]`` on the CPU (:func:`frequency_residuals`), for intervals over samples."""
        if not self.per_sample:
            raise ValueError("residuals() needs FPrincipleMonitor(..., per_sample=True)")
        if not self._residuals:
            raise ValueError("nothing recorded yet")
        return torch.stack([r[0] for r in self._residuals]), torch.stack([r[1] for r in self._residuals])

    def save(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``fprinciple.json`` into ``out_dir`` atomically (and the figure, if ``plot`` was given).

        Returns:
            Path of the JSON file.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result = self.result()
        path = write_json_atomic(out / "fprinciple.json", result.to_dict())
        if result.epochs and self.plot is not None:
            self.plot(result, out / "fprinciple.png")
        return path

