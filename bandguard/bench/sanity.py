"""Gradient-masking sanity checks: flags, each with a one-line reason, for the table and the JSON.

The checks follow Carlini et al. (1902.06705, "On evaluating adversarial robustness"), Athalye et
al. (1802.00420, obfuscated gradients) and AutoAttack's own warnings (Croce & Hein 2003.01690).
They are pure: :func:`run_checks` takes the built modules, the attacks, the finished cells and a few
samples and returns :class:`~bandguard.bench.results.Flag` s; nothing here imports the harness, so
both entry points (``run`` and ``evaluate_robustness(..., sanity=True)``) run the same checks.

What each check measures (``THRESHOLD`` = 1 %):

- ``non_monotone``: a cell's robust accuracy rises with eps.
- ``large_eps``: accuracy above chance under 10 steps of margin-loss PGD at Linf eps 1 (a ball
  spanning the whole ``[0, 1]`` range).
- ``blackbox_beats_whitebox``: within one cascade (one mode and threat model), an attack that took
  no gradients breaks more than 1 % of the samples the gradient attacks before it left robust.
- ``zero_gradients``: the input gradient of the loss the gradient attacks ascend (cross-entropy,
  margin or DLR) is zero or non-finite on more than 1 % of the correctly classified samples; the
  reason gives the margin loss's share beside it (a cross-entropy that saturates when the logits
  are scaled up reads zero while the margin's does not: masking, not robustness).
- ``loss_not_increasing``: five PGD steps (no random start) on that same loss, at the first gradient
  attack's smallest eps, do not raise its mean over the correctly classified samples (the reason
  gives the margin's before and after).
- ``more_steps_help``: the first gradient attack with twice the steps and one more restart lowers
  robust accuracy by more than a point (and more than one sample).
- ``randomized_without_eot``: two forwards differ but a gradient attack used one sample per step.
- ``probabilities``: outputs lie in ``[0, 1]`` and sum to one (probabilities, not logits).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bandguard._modes import model_mode
from bandguard.attacks.losses import dlr, margin
from bandguard.attacks.protocol import Attack, resolve_eot
from bandguard.bench.results import Cell, Flag

__all__ = [
    "THRESHOLD",
    "attack_objective",
    "check_blackbox",
    "check_gradients",
    "check_large_eps",
    "check_loss_increase",
    "check_monotone",
    "check_more_steps",
    "check_probabilities",
    "check_randomized_without_eot",
    "differs_between_forwards",
    "run_checks",
]

THRESHOLD = 0.01
"""Fraction of samples above which a per-sample symptom is flagged (1 %)."""

_ATTACKED = ("white-box", "adaptive")


def attack_objective(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """The untargeted objective an attack ascends, ``[N]`` from logits ``[N, K]``.

    Args:
        logits: ``[N, K]``.
        y: true labels ``[N]``.
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (best other logit minus the true one) or ``"dlr"``.

    Returns:
        The per-sample objective ``[N]``.
    """
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if loss == "margin":
        return margin(logits, y)
    if loss == "dlr":
        return dlr(logits, y)
    raise ValueError(f"loss must be 'ce', 'margin' or 'dlr', got {loss!r}")


def check_monotone(cell: Cell) -> Flag | None:
    """Robust accuracy of one cell must not increase with eps.

    Args:
        cell: an attack cell.

    Returns:
        The :class:`~bandguard.bench.results.Flag`, or ``None`` if the check passes.
    """
    acc = cell.robust_accuracy
    for e in range(1, len(acc)):
        if acc[e] > acc[e - 1]:
            return Flag("non_monotone", cell.model, cell.defense,
                        f"non_monotone: {cell.mode} robust accuracy rises from {acc[e - 1]:.1%} at eps "
                        f"{cell.epsilons[e - 1]:g} "
                        f"to {acc[e]:.1%} at eps {cell.epsilons[e]:g}", cell.attack, cell.mode)
    return None


def check_blackbox(cells: Sequence[Cell]) -> Flag | None:
    """In one cascade, a gradient-free attack breaking > 1 % of what gradient attacks left robust.

    Args:
        cells: one cascade's cells, in order.

    Returns:
        The :class:`~bandguard.bench.results.Flag`, or ``None`` if the check passes.
    """
    seen_gradient = False
    for prev, cell in itertools.pairwise(cells):
        seen_gradient = seen_gradient or int(prev.gradients.sum()) > 0
        if not seen_gradient or int(cell.gradients.sum()) > 0:
            continue
        broken = (prev.robust & ~cell.robust).float().mean(1)
        worst = int(broken.argmax())
        if float(broken[worst]) > THRESHOLD:
            return Flag("blackbox_beats_whitebox", cell.model, cell.defense,
                        f"blackbox_beats_whitebox: black-box {cell.attack} broke {float(broken[worst]):.1%} of "
                        f"samples the gradient "
                        f"attacks left robust at eps {cell.epsilons[worst]:g} ({cell.mode})", cell.attack, cell.mode)
    return None


def differs_between_forwards(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether two forwards of ``model`` on the same ``x`` give different outputs.

    Args:
        model: the module to probe.
        x: images ``[N, C, H, W]``.

    Returns:
        ``True`` if the outputs differ (a randomized forward).
    """
    with model_mode(model), torch.no_grad():
        return not torch.equal(model(x), model(x))


def check_randomized_without_eot(cells: Sequence[Cell], randomized: bool) -> Flag | None:
    """A randomized forward attacked by a gradient attack with one gradient sample per step.

    Args:
        cells: the module's cells.
        randomized: whether two forwards differed (:func:`differs_between_forwards`).

    Returns:
        The :class:`~bandguard.bench.results.Flag`, or ``None`` if the check passes.
    """
    if not randomized:
        return None
    for c in cells:
        if c.mode in _ATTACKED and int(c.gradients.sum()) > 0 and c.eot_samples <= 1:
            return Flag("randomized_without_eot", c.model, c.defense,
                        f"randomized_without_eot: two forwards differ but {c.attack} used 1 gradient sample "
                        f"per step (no EOT)", c.attack, c.mode)
    return None


def check_probabilities(model: nn.Module, x: torch.Tensor, *, where: tuple[str, str]) -> Flag | None:
    """Outputs in ``[0, 1]`` summing to one: cross-entropy on them is nearly flat for attacks.

    Log-probabilities (post-averaging's output) are not flagged: they are valid logits.

    Args:
        model: the module to probe.
        x: probe images ``[N, C, H, W]``.
        where: ``(model, defense)`` labels the flag carries.

    Returns:
        The :class:`~bandguard.bench.results.Flag`, or ``None`` if the check passes.
    """
    with model_mode(model), torch.no_grad():
        out = model(x).float()
    ones = torch.ones(out.shape[0], device=out.device)
    if out.min() >= 0 and out.max() <= 1 and torch.allclose(out.sum(1), ones, atol=1e-3):
        return Flag("probabilities", *where,
                    "probabilities: outputs lie in [0, 1] and sum to 1: probabilities, not logits")
    return None


def _bad_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[float, float]:
    """Shares of samples whose input gradient of ``loss`` is non-finite, and finite but all zero."""
    with model_mode(model, requires_grad=False):
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(attack_objective(model(xg).float(), y, loss).sum(), xg)
    flat = grad.flatten(1)
    finite = torch.isfinite(flat).all(1)
    zero = finite & (flat.abs().amax(1) == 0)
    return float((~finite).float().mean()), float(zero.float().mean())


def _correctly_classified(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples ``model`` classifies correctly (all of them if it gets none right)."""
    with model_mode(model), torch.no_grad():
        keep = model(x).argmax(1) == y
    return (x[keep], y[keep]) if bool(keep.any()) else (x, y)


def check_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "ce",
                    where: tuple[str, str]) -> Flag | None:
    """Zero or non-finite input gradients of the attack's ``loss`` on > 1 % of the correctly
    classified samples (all samples if none is); the margin loss's shares are reported beside.

    Args:
        model: the module to probe.
        x: probe images ``[N, C, H, W]``.
        y: their labels ``[N]``.
        loss: the loss the attacks ascend (``"ce"``, ``"margin"``, ``"dlr"``).
        where: ``(model, defense)`` labels the flag carries.

    Returns:
        The :class:`~bandguard.bench.results.Flag`, or ``None`` if the check passes.
    """
    x, y = _correctly_classified(model, x, y)
    non_finite, zero = _bad_gradients(model, x, y, loss)
    if non_finite + zero <= THRESHOLD:
        return None
    parts = [f"non-finite on {non_finite:.0%}"] if non_finite > 0 else []
    parts += [f"zero on {zero:.0%}"] if zero > 0 else []
    view = ""
    if loss != "margin":
        m_non_finite, m_zero = _bad_gradients(model, x, y, "margin")
        view = f" (margin loss: non-finite on {m_non_finite:.0%}, zero on {m_zero:.0%})"
    return Flag("zero_gradients", *where,
                f"zero_gradients: the input gradient of the {loss} loss the attacks ascend is "
                f"{' and '.join(parts)} of correctly classified samples{view}")


def _mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, draws: int) -> float:
    with model_mode(model), torch.no_grad():
        return float(torch.stack([attack_objective(model(x).float(), y, loss) for _ in range(draws)]).mean())


def check_loss_increase(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
                        eot: int, loss: str = "ce", where: tuple[str, str]) -> Flag | None:
    """Five PGD steps on the attack's ``loss`` from ``x`` (no random start) must raise its mean over
    the correctly classified samples; the margin loss before and after is reported beside.

    Args:
        model: the module to probe.
        x: probe images ``[N, C, H, W]``.
        y: their labels ``[N]``.
        eps: the budget of the steps.
        norm: ``"linf"`` or ``"l2"``.
        eot: gradient samples per step.
        loss: the loss the attacks ascend.
        where: ``(model, defense)`` labels the flag carries.

    Returns:
        The :class:`~bandguard.bench.results.Flag`, or ``None`` if the check passes.
    """
    from bandguard.attacks import APGD, PGD

    x, y = _correctly_classified(model, x, y)
    if loss == "dlr":
        attack: Attack = APGD(eps=(eps,), norm=norm, steps=5, loss="dlr", eot_samples=eot, seed=0)
    else:
        attack = PGD(eps=(eps,), norm=norm, steps=5, random_start=False, loss=loss, eot_samples=eot, seed=0)
    x_adv = attack(model, x, y)[0].x_adv
    draws = 4 if eot > 1 else 1
    before, after = _mean_loss(model, x, y, loss, draws), _mean_loss(model, x_adv, y, loss, draws)
    if after > before:
        return None
    view = ""
    if loss != "margin":
        view = (f" (margin loss: {_mean_loss(model, x, y, 'margin', draws):.4g} -> "
                f"{_mean_loss(model, x_adv, y, 'margin', draws):.4g})")
    return Flag("loss_not_increasing", *where,
                f"loss_not_increasing: 5 PGD steps at eps {eps:g} moved the mean {loss} loss the attacks "
                f"ascend from {before:.4g} to {after:.4g}{view}")


def check_large_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, eot: int,
                    where: tuple[str, str]) -> Flag | None:
    """PGD (Linf) at eps 1 (the whole ``[0, 1]`` range) must bring accuracy to chance or below.

    Args:
        model: the module to probe.
        x: probe images ``[N, C, H, W]``.
        y: their labels ``[N]``.
        num_classes: the model's classes (chance is ``1 / num_classes``).
        eot: gradient samples per step.
        where: ``(model, defense)`` labels the flag carries.

    Returns:
        The :class:`~bandguard.bench.results.Flag`, or ``None`` if the check passes.
    """
    from bandguard.attacks import PGD

    attack = PGD(eps=(1.0,), steps=10, loss="margin", eot_samples=eot, seed=0)
    acc = attack(model, x, y)[0].robust_accuracy
    chance = 1.0 / num_classes
    if acc > chance:
        return Flag("large_eps", *where,
                    f"large_eps: accuracy {acc:.1%} above chance ({chance:.1%}) under PGD at Linf eps 1 "
                    f"(the whole range)")
    return None


def check_more_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                     where: tuple[str, str]) -> Flag | None:
    """The attack at its smallest eps against twice the steps and one more restart.

    Args:
        model: the module to probe.
        x: probe images ``[N, C, H, W]``.
        y: their labels ``[N]``.
        attack: the attack (skipped unless it has ``steps`` and ``restarts``).
        where: ``(model, defense)`` labels the flag carries.

    Returns:
        The :class:`~bandguard.bench.results.Flag`, or ``None`` if the check passes.
    """
    fields = {f.name for f in dataclasses.fields(attack)} if dataclasses.is_dataclass(attack) else set()
    if not {"steps", "restarts"} <= fields:
        return None
    base = dataclasses.replace(attack, eps=(attack.epsilons[0],))  # type: ignore[type-var]
    stronger = dataclasses.replace(base, steps=2 * attack.steps, restarts=attack.restarts + 1)  # type: ignore
    a0 = base(model, x, y)[0].robust_accuracy
    a1 = stronger(model, x, y)[0].robust_accuracy
    if a0 - a1 > max(0.01, 1.5 / len(y)):
        return Flag("more_steps_help", *where,
                    f"more_steps_help: {2 * attack.steps} steps and {attack.restarts + 1} restarts "  # type: ignore
                    f"lower robust accuracy from {a0:.1%} to {a1:.1%} at eps {attack.epsilons[0]:g}: "
                    f"the attack has not converged")
    return None


def _gradient_cells(cells: Sequence[Cell]) -> list[Cell]:
    return [c for c in cells if c.mode in _ATTACKED and int(c.gradients.sum()) > 0]


def _checks_for(module: nn.Module, d: str, cells: Sequence[Cell], attacks: Mapping[str, Attack],
                x: torch.Tensor, y: torch.Tensor, num_classes: int, eot: int) -> list[Flag]:
    """The flags of one module; each says the mode of the rows it was measured on: a cell's own
    mode, or for the probes of ``module`` the mode that attacks it (white-box for the bare model,
    adaptive for a defense; transfer rows attack the bare model, so no probe of a defense is theirs)."""
    where = (cells[0].model if cells else "", d)
    probed = "white-box" if d == "none" else "adaptive"
    return [f if f.mode else dataclasses.replace(f, mode=probed)
            for f in _module_flags(module, where, cells, attacks, x, y, num_classes, eot)]


def _module_flags(module: nn.Module, where: tuple[str, str], cells: Sequence[Cell], attacks: Mapping[str, Attack],
                  x: torch.Tensor, y: torch.Tensor, num_classes: int, eot: int) -> list[Flag]:
    flags: list[Flag | None] = [check_monotone(c) for c in cells if c.mode != "clean"]
    chains: dict[tuple[str, str, tuple[float, ...]], list[Cell]] = {}
    for c in cells:
        if c.mode != "clean":
            chains.setdefault((c.mode, c.ball or c.norm, c.ball_eps or c.epsilons), []).append(c)
    flags += [check_blackbox(chain) for chain in chains.values()]
    randomized = differs_between_forwards(module, x)
    flags.append(check_randomized_without_eot(cells, randomized))
    flags.append(check_probabilities(module, x, where=where))
    probe_eot = 2 if randomized else 1
    gradient_cells = _gradient_cells(cells)
    used = [attacks[c.attack] for c in gradient_cells if c.attack in attacks]
    losses = list(dict.fromkeys(a.gradient_loss for a in used if a.gradient_loss in ("ce", "margin", "dlr")))
    for loss in losses or ["margin"]:
        if loss == "dlr" and num_classes < 3:
            continue
        flag = check_gradients(module, x, y, loss=loss, where=where)  # type: ignore[arg-type]
        if flag is not None:
            flags.append(flag)
            break
    first = gradient_cells[0] if gradient_cells else None
    norm = first.ball if first is not None and first.ball else (first.norm if first is not None else "linf")
    eps = (first.ball_eps or first.epsilons)[0] if first is not None else 0.1
    if norm in ("linf", "l2") and eps > 0:
        for loss in losses or ["margin"]:
            if loss == "dlr" and num_classes < 3:
                continue
            flag = check_loss_increase(module, x, y, eps=eps, norm=norm, eot=probe_eot, loss=loss,  # type: ignore
                                       where=where)
            if flag is not None:
                flags.append(flag)
                break
    flags.append(check_large_eps(module, x, y, num_classes=num_classes, eot=probe_eot, where=where))
    if first is not None and first.attack in attacks:
        attack = attacks[first.attack]
        if "eot_samples" in {f.name for f in dataclasses.fields(attack)}:
            samples = resolve_eot(module, getattr(attack, "eot_samples", None), default=eot)
            # Both runs share the EOT setting, so capping it keeps the comparison fair and cheap.
            attack = dataclasses.replace(attack, eot_samples=min(samples, 2))  # type: ignore[type-var]
        flag = check_more_steps(module, x, y, attack, where=where)
        flags.append(None if flag is None else dataclasses.replace(flag, attack=first.attack))
    return [f for f in flags if f is not None]


def run_checks(modules: Mapping[str, nn.Module], attacks: Mapping[str, Attack], cells: Sequence[Cell],
               x: torch.Tensor, y: torch.Tensor, *, num_classes: int, eot: int = 10) -> list[Flag]:
    """Every check for one model and each of its defended modules.

    Args:
        modules: label -> module as the cells name them (``"none"``: the bare model), built already.
        attacks: label -> the attack each cell's ``attack`` names (those the harness added too).
        cells: the model's finished cells (clean ones included).
        x: the probe samples ``[M, C, H, W]`` on the modules' device.
        y: their labels ``[M]``.
        num_classes: the model's classes.
        eot: gradient samples per step on a declared-randomized module where an attack leaves
            ``eot_samples`` unset (as in the cells).

    Returns:
        The flags that fired, in module order.
    """
    flags: list[Flag] = []
    for d, module in modules.items():
        own = [c for c in cells if c.defense == d]
        flags += _checks_for(module, d, own, attacks, x, y, num_classes, eot)
    return flags
