"""Frequency-domain defenses: input low-pass, post-averaging, kernel smoothing, regularizers.

Every defense is an ``nn.Module`` (or returns one) following the protocol of
:mod:`bandguard.defenses.base`: ``randomized``, ``differentiable`` and ``forward_cost``.
"""

from __future__ import annotations

from bandguard.defenses.base import Defense, bpda, forward_cost, is_randomized
from bandguard.defenses.bpda import BPDA
from bandguard.defenses.compose import (
    DEFENSES,
    RECOMMENDED,
    Defended,
    build_defense,
    defend,
    parse_defense_spec,
)
from bandguard.defenses.kernel_smoothing import (
    SmoothSettings,
    filter_kernel,
    filter_kernels,
    smooth_kernel,
    smooth_kernels,
)
from bandguard.defenses.lowpass import (
    HighPass,
    LowPass,
    LowPassSettings,
    highpass_filter,
    lowpass_filter,
)
from bandguard.defenses.post_averaging import (
    PostAverageSettings,
    PostAveraging,
    Reduce,
    neighbours,
    post_average,
    sample_directions,
)
from bandguard.defenses.regularizers import (
    Penalty,
    kernel_high_frequency_penalty,
    neighbor_weight_penalty,
    parse_regularizer,
)

__all__ = [
    "BPDA",
    "DEFENSES",
    "RECOMMENDED",
    "Defended",
    "Defense",
    "HighPass",
    "LowPass",
    "LowPassSettings",
    "Penalty",
    "PostAverageSettings",
    "PostAveraging",
    "Reduce",
    "SmoothSettings",
    "bpda",
    "build_defense",
    "defend",
    "filter_kernel",
    "filter_kernels",
    "forward_cost",
    "highpass_filter",
    "is_randomized",
    "kernel_high_frequency_penalty",
    "lowpass_filter",
    "neighbor_weight_penalty",
    "neighbours",
    "parse_defense_spec",
    "parse_regularizer",
    "post_average",
    "sample_directions",
    "smooth_kernel",
    "smooth_kernels",
]
