"""Composing defenses: :func:`defend`, the :data:`DEFENSES` registry and spec strings.

Order of a composed defense (outermost last): smoothing of the weights (a new model), then the
input low-pass in front of the model, then post-averaging around the whole::

    PostAveraging(Sequential(LowPass(r), smooth_kernels(model, rho)))

The CLI and the benchmark spec build defenses from strings such as ``"lowpass:8"``,
``"post_average:1.35,K=15"`` or ``"smooth:0.25"`` through :func:`build_defense` (the grammar of
:mod:`bandguard.defenses.spec`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import torch
from torch import nn

from bandguard._checks import check_model, check_options, check_same_device_dtype, check_seed, is_scalar_number
from bandguard._registry import Registry
from bandguard.defenses.base import Defense, forward_cost, is_randomized
from bandguard.defenses.kernel_smoothing import SmoothSettings, filter_kernels, smooth_kernels
from bandguard.defenses.lowpass import HighPass, LowPass
from bandguard.defenses.post_averaging import PostAverageSettings, PostAveraging
from bandguard.defenses.spec import Spec, parse_spec, parse_value
from bandguard.fourier import FrequencyFilter

__all__ = ["DEFENSES", "RECOMMENDED", "Defended", "build_defense", "defend"]

S = TypeVar("S")

RECOMMENDED: Mapping[str, Mapping[str, float]] = MappingProxyType({
    "mnist": MappingProxyType({"lowpass": 10.0, "post_average": 3.0}),
    "cifar10": MappingProxyType({"lowpass": 18.0, "post_average": 0.5}),
})
"""Documented default radii per data set, chosen so that each defense alone keeps clean accuracy
within 1.5 points of the undefended reference net of the test fixtures (measured in
``benchmarks/RESULTS.md``, ``## Defense cost``; asserted in ``tests/test_defenses_data.py``):

- ``lowpass``: ideal disc low-pass radius (frequency-index units), output clipped to (0, 1) (the
  ``LowPass`` default). MNIST 28 x 28: 10 (-0.1 points on 1,000 test images; radius 6 costs 2.1
  points, 3.3 unclipped). CIFAR-10 32 x 32: 18 (+0.0 points on the first 1,000 test images, 100
  per class; 16 costs 0.1, 14 costs 0.3, 12 costs 2.8, 8 costs 26): the short-trained CIFAR net
  leans on the frequencies beyond radius 12 (Wang et al.'s point); 18 keeps a margin for nets
  trained otherwise. (Figures measured before the loader interleaved the classes came from
  airplanes only and were several times larger.)
- ``post_average``: outer L2 radius ``radius_l2`` in ``[0, 1]`` pixel space with ``K = 15``. MNIST: 3.0
  (per-pixel noise scale ``3 / 28 ~ 0.11``, which the MNIST net ignores). CIFAR-10: 0.5 (about
  Lin et al.'s normalized-space ``R = 2.2``); their ``R = 6`` (1.35 here) costs the short-trained
  ``cifar_small`` 6.5 points (62.0 vs 68.5 % on 200 airplane images, before the loader
  interleaved the classes), so it is not the default; 0.5 costs nothing (+0.5 points on the
  class-balanced 1,000).
"""


class Defended(Defense):
    """A model with defenses applied; its ``repr`` lists them in the order they act.

    Carries the protocol facts of what it wraps: ``randomized`` if any part is,
    ``differentiable`` if every part is, and the total ``forward_cost``.

    Args:
        net: the defended network (input filters, model, averaging wrapper).
        weights: what was done to the weights beforehand, for the ``repr`` (``None`` if nothing).
    """

    def __init__(self, net: nn.Module, *, weights: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.weights = weights
        self.randomized = is_randomized(net)
        self.differentiable = all(getattr(m, "differentiable", True) for m in net.modules())
        self.forward_cost = forward_cost(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Metadata only: a half or double batch around a float32 model gets the attacks' clear
        # error instead of torch's dtype mismatch deep inside (the filters pass any float through).
        return self.net(check_same_device_dtype(self.net, x))

    def extra_repr(self) -> str:
        parts = [f"randomized={self.randomized}", f"forward_cost={self.forward_cost}"]
        if self.weights:
            parts.insert(0, f"weights={self.weights}")
        return ", ".join(parts)


def _coerce(value: object, settings_type: type[S], first_field: str, name: str) -> S:
    """A number (the first field), a dict of options, or the settings dataclass itself."""
    if isinstance(value, settings_type):
        return value
    if is_scalar_number(value):
        return settings_type(**{first_field: value})
    if isinstance(value, Mapping):
        check_options(value, [f.name for f in dataclasses.fields(settings_type)], name)  # type: ignore[arg-type]
        try:
            return settings_type(**dict(value))
        except TypeError as err:  # a value of the wrong type (names are checked above)
            raise ValueError(f"bad options for {name} {dict(value)!r}: {err}") from None
    raise TypeError(
        f"{name} must be a number, a dict of options or a {settings_type.__name__}, "
        f"got {type(value).__name__} {value!r}"
    )


def _lowpass(value: object) -> LowPass:
    """``defend``'s ``lowpass``: a radius, :class:`LowPass` options, or a low-pass FrequencyFilter."""
    if isinstance(value, FrequencyFilter):
        return LowPass.from_filter(value)
    if is_scalar_number(value):
        return LowPass(value)
    if isinstance(value, Mapping):
        check_options(value, inspect.signature(LowPass).parameters, "lowpass")
        try:
            return LowPass(**dict(value))
        except TypeError as err:  # a value of the wrong type (names are checked above)
            raise ValueError(f"bad options for lowpass {dict(value)!r}: {err}") from None
    raise TypeError(
        f"lowpass must be a number, a dict of options or a FrequencyFilter, got {type(value).__name__} {value!r}"
    )


def defend(
    model: nn.Module,
    *,
    lowpass: float | Mapping[str, Any] | FrequencyFilter | None = None,
    post_average: float | Mapping[str, Any] | PostAverageSettings | None = None,
    smooth: float | Mapping[str, Any] | SmoothSettings | None = None,
    generator: torch.Generator | None = None,
) -> Defended:
    """Compose bandguard's defenses around ``model`` into one module.

    Order: ``smooth`` (kernel smoothing, Wang et al. 1905.13545) changes a copy of the weights,
    ``lowpass`` (input filter) acts in front of the model, ``post_average`` (Lin et al.
    1905.12797) averages the whole filtered model over random neighbours of the input.

    Args:
        model: classifier taking ``[N, C, H, W]`` in its bounds, returning logits.
        lowpass: radius in frequency-index units, options of :class:`LowPass` (``shape``,
            ``profile``, ``clip``, ...), or a low-pass :class:`~bandguard.fourier.FrequencyFilter`.
        post_average: outer L2 radius ``radius_l2`` (pixel space), options of
            :class:`PostAverageSettings`, or the settings.
        smooth: kernel-smoothing ``rho``, options of :class:`SmoothSettings`, or the settings.
        generator: randomness for post-averaging.

    Returns:
        :class:`Defended`, ``[N, C, H, W] -> [N, num_classes]``; ``model`` itself is untouched.

    Example:
        >>> d = defend(model, lowpass=8, post_average={"radius_l2": 1.35, "K": 15}, smooth=0.25)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    net, weights = model, None
    if smooth is not None:
        s = _coerce(smooth, SmoothSettings, "rho", "smooth")
        net = smooth_kernels(net, s.rho, s.layers, normalise=s.normalise)
        weights = f"smooth_kernels(rho={s.rho:g}, layers={s.layers!r}{', normalise=True' if s.normalise else ''})"
    if lowpass is not None:
        net = nn.Sequential(_lowpass(lowpass), net)
    if post_average is not None:
        pa = _coerce(post_average, PostAverageSettings, "radius_l2", "post_average")
        net = PostAveraging.from_settings(net, pa, generator=generator)
    return Defended(net, weights=weights)


# --------------------------------------------------------------------------- registry and specs

DefenseBuilder = Callable[..., nn.Module]

DEFENSES: Registry[DefenseBuilder] = Registry("defense")
"""Defense builders by name: ``DEFENSES.get(name)(model, *args, **options) -> nn.Module``."""


@DEFENSES.register("lowpass")
def _build_lowpass(model: nn.Module, radius: float, **options: Any) -> nn.Module:
    return defend(model, lowpass={"radius": radius, **options})


@DEFENSES.register("highpass")
def _build_highpass(model: nn.Module, radius: float, **options: Any) -> nn.Module:
    return Defended(nn.Sequential(HighPass(radius, **options), model))


@DEFENSES.register("post_average")
def _build_post_average(model: nn.Module, radius_l2: float, *, seed: int | None = None,
                        **options: Any) -> nn.Module:
    generator = None if seed is None else torch.Generator().manual_seed(check_seed(seed))
    if "radii_l2" in options:  # the grammar reads "1+2" as names ("1", "2") and "1" as one number
        radii = options["radii_l2"]
        radii = radii if isinstance(radii, tuple) else (radii,)
        options["radii_l2"] = tuple(parse_value(r) if isinstance(r, str) else r for r in radii)
    return defend(model, post_average={"radius_l2": radius_l2, **options}, generator=generator)


@DEFENSES.register("smooth")
def _build_smooth(model: nn.Module, rho: float, **options: Any) -> nn.Module:
    return defend(model, smooth={"rho": rho, **options})


@DEFENSES.register("filter_kernels")
def _build_filter_kernels(model: nn.Module, radius: float, **options: Any) -> nn.Module:
    layers = options.pop("layers", "first")
    new = filter_kernels(model, radius, layers, **options)
    return Defended(new, weights=f"filter_kernels(radius={radius:g}, layers={layers!r})")


def check_defense_spec(spec: str) -> Spec:
    """Parse a defense spec and check its name and arguments against the registry, with no model.

    Lets a benchmark spec be validated before anything runs; :func:`build_defense` calls it too.

    Args:
        spec: ``"name:value,key=value,..."``, e.g. ``"lowpass:8"`` or ``"post_average:1.35,K=15"``.

    Returns:
        The parsed :class:`~bandguard.defenses.spec.Spec`.

    Raises:
        ValueError: a malformed spec, an unknown name (the known ones are listed) or arguments the
            defense does not take.
    """
    parsed = parse_spec(spec, what="defense")
    builder = DEFENSES.get(parsed.name)  # unknown names raise, listing the known ones
    known = _defense_options(parsed.name)
    if known:
        check_options(parsed.options, known, f"defense {parsed.name!r} (spec {spec!r})")
    try:
        inspect.signature(builder).bind(None, *parsed.args, **parsed.options)
    except TypeError as err:
        raise ValueError(f"bad arguments in defense spec {spec!r}: {err}") from None
    return parsed


def _defense_options(name: str) -> set[str]:
    """The options a built-in defense's spec takes (its main setting by name too); empty for a
    defense registered elsewhere, whose builder then judges its options itself."""
    if name in ("lowpass", "highpass"):
        return set(inspect.signature(LowPass if name == "lowpass" else HighPass).parameters)
    if name == "post_average":
        return {f.name for f in dataclasses.fields(PostAverageSettings)} | {"seed"}
    if name == "smooth":
        return {f.name for f in dataclasses.fields(SmoothSettings)}
    if name == "filter_kernels":
        return set(inspect.signature(filter_kernels).parameters) - {"model"}
    return set()


def build_defense(spec: str, model: nn.Module) -> nn.Module:
    """Build the defense a spec string names around ``model``.

    The grammar is :func:`bandguard.defenses.spec.parse_spec`'s (shared with regularizers):
    ``name:first_value,key=value,...``, the first value being the defense's main setting
    (``lowpass``/``highpass``: ``radius``; ``post_average``: ``radius_l2``; ``smooth``: ``rho``;
    ``filter_kernels``: ``radius``), which may also be given by name.

    Args:
        spec: ``"name:value,key=value,..."``; the names are those of :data:`DEFENSES`.
        model: the classifier to defend, mapping ``[N, C, H, W]`` images to logits ``[N, K]``;
            it is not changed (weight-space defenses return a new model).

    Returns:
        An ``nn.Module`` with ``model``'s call signature: ``[N, C, H, W]`` in, logits ``[N, K]`` out.

    Raises:
        ValueError: a malformed spec, an unknown name or arguments the defense does not take.

    Example:
        >>> build_defense("post_average:1.35,K=15,seed=0", model)
        >>> build_defense("lowpass:radius=4,shape=square", model)
    """
    parsed = check_defense_spec(spec)
    check_model(model)
    return DEFENSES.get(parsed.name)(model, *parsed.args, **parsed.options)
