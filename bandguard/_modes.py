"""The one helper that runs a caller's model in a chosen mode and gives it back exactly as found.

Every public function that runs a model (attacks, spectral analysis, defenses that evaluate,
training callbacks) goes through :func:`model_mode`. Flipping only the top module
(saving only ``model.training`` and calling ``model.train(...)`` with it afterwards) is wrong: that call
sets *every* submodule, so a user's BatchNorm frozen in eval mode inside a training model would
come back in train mode. This helper records each submodule's flag and each parameter's
``requires_grad`` and restores them one by one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["model_mode"]


@contextlib.contextmanager
def model_mode(
    model: nn.Module, *, train: bool | None = False, requires_grad: bool | None = None
) -> Iterator[nn.Module]:
    """Run a block with ``model`` in train or eval mode; restore every flag afterwards.

    Args:
        model: the caller's module; its submodules' ``training`` flags and its parameters'
            ``requires_grad`` flags are saved on entry and restored on exit, even on error.
        train: ``False`` puts every submodule in eval mode, ``True`` in train mode, ``None``
            leaves the modes as they are (they are still restored).
        requires_grad: ``False`` freezes every parameter for the block (attacks need gradients
            w.r.t. the input only, and frozen weights keep autograd from saving what their
            gradients would need); ``None`` leaves the flags as they are.

    Yields:
        ``model`` itself.
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if train is not None:
            model.train(train)
        if requires_grad is not None:
            for p, _ in grads:
                p.requires_grad_(requires_grad)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)
