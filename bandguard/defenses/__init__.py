"""Frequency-domain defenses: input low/high-pass, post-averaging, kernel smoothing, regularizers.

Every defense is an ``nn.Module`` (or returns one) following the protocol of
:mod:`bandguard.defenses.base`: ``randomized``, ``differentiable`` and ``forward_cost``. Defenses
and regularizers are named by one spec grammar (:mod:`bandguard.defenses.spec`).
"""

from __future__ import annotations

from bandguard.defenses.base import Defense, forward_cost, is_randomized
from bandguard.defenses.bpda import BPDA, straight_through
from bandguard.defenses.compose import (
    DEFENSES,
    RECOMMENDED,
    Defended,
    build_defense,
    check_defense_spec,
    defend,
)
from bandguard.defenses.kernel_smoothing import (
    SmoothSettings,
    filter_kernel,
    filter_kernels,
    smooth_kernel,
    smooth_kernels,
)
from bandguard.defenses.lowpass import DEFENSE_CLIP, HighPass, LowPass
from bandguard.defenses.post_averaging import (
    MAX_CHUNK_VALUES,
    PostAverageSettings,
    PostAveraging,
    Reduce,
    neighbours,
    post_average,
    sample_directions,
)
from bandguard.defenses.regularizers import (
    KERNEL_HIGH_RADIUS,
    Penalty,
    RegularizerKind,
    kernel_high_frequency_penalty,
    neighbor_weight_penalty,
    parse_regularizer,
)
from bandguard.defenses.spec import Spec, parse_spec

__all__ = [
    "BPDA",
    "DEFENSES",
    "DEFENSE_CLIP",
    "KERNEL_HIGH_RADIUS",
    "MAX_CHUNK_VALUES",
    "RECOMMENDED",
    "Defended",
    "Defense",
    "HighPass",
    "LowPass",
    "Penalty",
    "PostAverageSettings",
    "PostAveraging",
    "Reduce",
    "RegularizerKind",
    "SmoothSettings",
    "Spec",
    "build_defense",
    "check_defense_spec",
    "defend",
    "filter_kernel",
    "filter_kernels",
    "forward_cost",
    "is_randomized",
    "kernel_high_frequency_penalty",
    "neighbor_weight_penalty",
    "neighbours",
    "parse_regularizer",
    "parse_spec",
    "post_average",
    "sample_directions",
    "smooth_kernel",
    "smooth_kernels",
    "straight_through",
]
