"""bandguard: adversarial robustness through the frequency domain, for PyTorch.

Wrap a classifier in a frequency-domain defense, benchmark attacks against it, and analyse the
spectra of models, perturbations and corruptions. The names below are the public API.
"""

from __future__ import annotations

__version__ = "0.1.0"

from bandguard import fourier
from bandguard.data import ImageDataset, SampleDataWarning, load_dataset, make_loader
from bandguard.models import (
    Normalize,
    create_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

__all__ = [
    "ImageDataset",
    "Normalize",
    "SampleDataWarning",
    "__version__",
    "create_model",
    "fourier",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "make_loader",
    "save_checkpoint",
]
