"""bandguard: adversarial robustness through the frequency domain, for PyTorch.

Wrap a classifier in a frequency-domain defense, benchmark attacks against it, and analyse the
spectra of models, perturbations and corruptions. The names below are the public API; each
subpackage (``bandguard.attacks``, ``bandguard.defenses``, ``bandguard.spectral``) holds the rest.
"""

from __future__ import annotations

from typing import Any

from bandguard import attacks, defenses, fourier, spectral
from bandguard._amp import BF16Forward, native_bf16
from bandguard._version import __version__
from bandguard.attacks import (
    FGM,
    FGSM,
    PGD,
    AttackResults,
    FoolboxAttack,
    FourierAttack,
    FourierGreedy,
    attack_preset,
    create_attack,
)
from bandguard.data import FolderSource, ImageDataset, SampleDataWarning, load_dataset, make_loader
from bandguard.defenses import (
    HighPass,
    LowPass,
    PostAveraging,
    build_defense,
    defend,
    filter_kernels,
    kernel_high_frequency_penalty,
    neighbor_weight_penalty,
    smooth_kernels,
)
from bandguard.models import (
    Normalize,
    create_model,
    load_checkpoint,
    load_model,
    model_from_code,
    save_checkpoint,
)
from bandguard.spectral import (
    FPrincipleMonitor,
    attack_spectrum,
    corrupt,
    corruption_spectrum,
    filtered_accuracy,
    fourier_heatmap,
    kernel_spectrum,
    perturbation_spectrum,
)
from bandguard.training import TrainConfig, train

__all__ = [
    "FGM",
    "FGSM",
    "PGD",
    "AttackResults",
    "BF16Forward",
    "FPrincipleMonitor",
    "FolderSource",
    "FoolboxAttack",
    "FourierAttack",
    "FourierGreedy",
    "HighPass",
    "ImageDataset",
    "LowPass",
    "Normalize",
    "PostAveraging",
    "SampleDataWarning",
    "TrainConfig",
    "__version__",
    "attack_preset",
    "attack_spectrum",
    "attacks",
    "build_defense",
    "corrupt",
    "corruption_spectrum",
    "create_attack",
    "create_model",
    "defend",
    "defenses",
    "evaluate_robustness",
    "filter_kernels",
    "filtered_accuracy",
    "fourier",
    "fourier_heatmap",
    "kernel_high_frequency_penalty",
    "kernel_spectrum",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "make_loader",
    "model_from_code",
    "native_bf16",
    "neighbor_weight_penalty",
    "perturbation_spectrum",
    "save_checkpoint",
    "smooth_kernels",
    "spectral",
    "train",
]


def __getattr__(name: str) -> Any:
    """``evaluate_robustness`` loads the harness on first use, so importing one piece of
    ``bandguard.bench`` (the sanity checks, the result store) does not load the harness."""
    if name == "evaluate_robustness":
        from bandguard.bench.harness import evaluate_robustness

        return evaluate_robustness
    raise AttributeError(f"module 'bandguard' has no attribute {name!r}")
