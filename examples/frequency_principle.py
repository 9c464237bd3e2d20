"""Frequency principle: networks fit the low frequencies of their target first (Xu et al.).

Reproduces Xu et al., "Frequency Principle: Fourier Analysis Sheds Light on Deep Neural Networks"
(arXiv 1901.06523) and "Training behavior of deep neural network in frequency domain"
(arXiv 1807.01251), two ways:

1. CIFAR-10, *filtering method*: the ``cifar_fast`` net (the examples' architecture) is trained from
   scratch on a fixed random subset of the training images, without augmentation (the principle is
   about fitting the training targets), watched by :class:`bandguard.spectral.FPrincipleMonitor`: on
   a reference set of those images the Gaussian kernel ``K`` (variance delta) splits labels and
   softmax outputs into a low part ``K y`` and a high part ``y - K y``, and the relative errors
   ``e_low`` and ``e_high`` are recorded every epoch. Each curve is normalised to its epoch-0
   value (an untrained net starts with different errors in the two parts), and only deltas whose
   kernel *separates* the labels are read: both parts must carry at least 10 % of the labels'
   variance (a delta far below the images' squared distances makes ``K`` the identity and the
   high part empty; a delta far above makes the low part the class frequencies). Claim: the
   normalised ``e_low`` falls faster than the normalised ``e_high``, measured as the mean over the
   run's epochs of their difference, for several training seeds; intervals: 95 % percentile
   bootstrap over the reference images (their per-image residuals,
   :func:`bandguard.spectral.fprinciple.frequency_residuals`; the kernel fixed).
2. A 1-D toy, *projection method* on a line: an MLP fits ``sin x + sin 3x + sin 5x`` on a grid of
   ``[-pi, pi)``; the relative DFT error of its output at k = 1, 3, 5
   (:func:`bandguard.spectral.fprinciple.projection_errors`) is recorded over the training steps.
   Claim: the step at which frequency k is fitted grows with k (spectral bias); interval over seeds.

Quick mode trains on 2,000 random CIFAR-10 images (a reference set of 1,000 of them) from 3 seeds
and fits the toy from 10 seeds; full mode uses Xu et al.'s 5,000 images (all of them the reference
set; their run took the first 5,000, which in a class-by-class image folder would be one class, so
ours are a fixed random draw), 5 seeds and 30 toy seeds.

    BANDGUARD_DATA=/path/to/data python examples/frequency_principle.py --quick
    BANDGUARD_DATA=/path/to/data python examples/frequency_principle.py --device cuda
"""

from __future__ import annotations

import dataclasses
import math

import torch
from _common import FAMILY, Summary, setup, test_images
from matplotlib.figure import Figure
from torch import nn

from bandguard.bench.stats import bootstrap
from bandguard.bench.zoo import RECIPES
from bandguard.data import load_dataset
from bandguard.models import create_model
from bandguard.spectral import FPrincipleMonitor, plots
from bandguard.spectral.fprinciple import gaussian_filter_kernel, projection_errors, squared_distances
from bandguard.training import evaluate, subset, train

THRESHOLD_TOY = 0.1  # a toy frequency is "fitted" once its relative DFT error is below 10 %
# Kernel variances, in squared-distance units of flattened [0, 1] CIFAR-10 images (squared
# nearest-neighbour distances of 1,000 images are about 50-170). Which of them separate the labels is
# measured, not assumed (SEPARATION).
DELTAS = (10.0, 20.0, 30.0, 50.0, 100.0)
SEPARATION = 0.1
"""A delta is read only if both ``K y`` and ``y - K y`` carry at least this share of the labels' variance."""
FREQUENCIES = (1, 3, 5)  # the toy target's components, sin(k x)
RESAMPLES = 300  # bootstrap resamples of the [n, seeds, epochs] residual tables (memory: 8 n S E x 300 bytes)

# Criteria, written before the run (the verdicts below only read them).
CRITERION_IMAGES = ("for a separating delta, the 95 % bootstrap interval (over the reference images) of the mean "
                    "over seeds and epochs 1..E of (e_high / e_high(0) - e_low / e_low(0)) lies above 0")
CRITERION_TOY = ("the 95 % bootstrap interval (over seeds) of the share of seeds whose fitting step strictly "
                 "increases with k (k = 1, 3, 5) lies above 0.5")
QUOTE = "DNNs often fit target functions from low to high frequencies during the training process."
QUOTE_TOY = ("a DNN with common settings first quickly captures the dominant low-frequency components, and then "
             "relatively slowly captures the high-frequency ones")


def main() -> None:
    s = setup(__file__, __doc__)
    summary = Summary(
        s, "Frequency principle (Xu et al. 1901.06523, 1807.01251)",
        "Low frequencies of the target are fitted first: the filtering method's e_low and e_high (normalised to "
        "epoch 0) while the cifar_fast net is trained from scratch on a random CIFAR-10 subset, and the DFT "
        "error per frequency of a 1-D MLP fitting sin x + sin 3x + sin 5x.",
    )
    images_filtering(s, summary)
    toy_projection(s, summary)
    summary.write()


def label_shares(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per delta, the share of the labels' variance in ``K y`` and in ``y - K y``: ``([D], [D])``."""
    target = nn.functional.one_hot(y, 10).double()
    centred = target - target.mean(0)
    total = centred.pow(2).sum()
    distances = squared_distances(x.double())
    low, high = [], []
    for delta in DELTAS:
        smooth = gaussian_filter_kernel(distances, delta) @ target
        low.append((smooth - target.mean(0)).pow(2).sum() / total)
        high.append((target - smooth).pow(2).sum() / total)
    return torch.stack(low), torch.stack(high)


def normalised_gap(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Mean over seeds and epochs 1.. of ``e_high / e_high(0) - e_low / e_low(0)`` from per-image
    squared residuals ``[B, n, S, E + 1]`` (one delta) -> ``[B]``."""
    e_low = (low.sum(1) / low[:, :, :, :1].sum(1)).sqrt()  # [B, S, E + 1]
    e_high = (high.sum(1) / high[:, :, :, :1].sum(1)).sqrt()
    return (e_high - e_low)[:, :, 1:].mean((1, 2))


def images_filtering(s, summary: Summary) -> None:
    """Part 1: FPrincipleMonitor on cifar_fast training runs from several seeds (filtering method)."""
    n_train, n_ref, epochs, seeds = s.pick(2000, 5000), s.pick(1000, 5000), s.pick(20, 40), s.pick(3, 5)
    train_set = load_dataset("cifar10", "train")
    x, y = subset(train_set.images, train_set.labels, n_train, seed=s.seed)
    ref_x, ref_y = subset(x, y, n_ref, seed=s.seed + 1)
    ref = ref_x.float().div(255)
    share_low, share_high = label_shares(ref, ref_y)
    separating = [d for j, d in enumerate(DELTAS) if min(share_low[j], share_high[j]) >= SEPARATION]
    # The cifar_fast recipe's optimiser and schedule at batch 128 (lr scaled down with the batch),
    # without augmentation, label smoothing or Lookahead: the net fits its training targets.
    config = dataclasses.replace(RECIPES[FAMILY["natural"]].config, epochs=epochs, batch_size=128, lr=0.2,
                                 augment=False, label_smoothing=0.0, lookahead=False)
    test_x, test_y = test_images("cifar10", s.pick(1000, 10_000), seed=s.seed)
    results, residuals, accs = [], [], []
    for seed in range(s.seed, s.seed + seeds):
        monitor = FPrincipleMonitor(ref.to(s.device), ref_y.to(s.device), deltas=DELTAS, num_classes=10,
                                    per_sample=True, identity_threshold=1.0)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = create_model(config.arch)
        model.to(s.device)
        train(model, (x, y), dataclasses.replace(config, seed=seed), callbacks=[monitor], device=s.device,
              progress=False)
        results.append(monitor.result())
        residuals.append(monitor.residuals())  # ([E + 1, D, n], [E + 1, D, n])
        accs.append((evaluate(model, x, y, device=s.device), evaluate(model, test_x, test_y, device=s.device)))
    keep = [DELTAS.index(d) for d in separating]
    plots.plot_fprinciple(dataclasses.replace(
        results[0], deltas=tuple(separating), e_low=tuple(tuple(r[j] for j in keep) for r in results[0].e_low),
        e_high=tuple(tuple(r[j] for j in keep) for r in results[0].e_high)), s.out / "fprinciple_cifar10.png",
        write_data=False, normalise=True,
        title=f"{config.arch}, {n_train} CIFAR-10 images, seed {s.seed}; reference n = {n_ref}")
    summary.figure(s.out / "fprinciple_cifar10.png",
                   "e_low (solid) and e_high (dashed), each divided by its epoch-0 value, per epoch, for the "
                   f"separating deltas; {FAMILY['natural']} net (seed {s.seed}) on {n_train} CIFAR-10 images, "
                   f"reference set {n_ref}")

    train_acc = sum(a for a, _ in accs) / seeds
    test_acc = sum(b for _, b in accs) / seeds
    summary.model("natural", {"name": f"{config.arch} (trained here, {n_train} images, {epochs} epochs, no "
                              "augmentation)", "test_accuracy": test_acc}, train=train_acc)
    summary.number("cifar_train_images", n_train)
    summary.number("cifar_reference_images", n_ref)
    summary.number("cifar_epochs", epochs)
    summary.number("cifar_seeds", seeds)
    summary.number("cifar_train_acc", train_acc)
    summary.number("cifar_test_acc", test_acc)
    low = torch.stack([r[0] for r in residuals])  # [S, E + 1, D, n]
    high = torch.stack([r[1] for r in residuals])
    rows = []
    for j, delta in enumerate(DELTAS):
        key = f"d{delta:g}"
        summary.number(f"share_low_{key}", share_low[j])
        summary.number(f"share_high_{key}", share_high[j])
        cols = [low[:, :, j].permute(2, 0, 1), high[:, :, j].permute(2, 0, 1)]  # [n, S, E + 1]
        gap = bootstrap(normalised_gap, *cols, resamples=RESAMPLES)
        summary.number(f"gap_{key}", gap.estimate)
        per_seed = [float(normalised_gap(*(c[:, i : i + 1].unsqueeze(0) for c in cols))) for i in range(seeds)]
        rows.append([f"{delta:g}", float(share_low[j]), float(share_high[j]),
                     "yes" if delta in separating else "no", gap.format("+.3f"),
                     " / ".join(f"{g:+.3f}" for g in per_seed)])
        if delta not in separating:
            continue
        agree = gap.low > 0
        summary.finding(
            f"On CIFAR-10 the low-frequency part of the labels is fitted first (filtering method, delta {delta:g})",
            "Xu et al. 1901.06523, Sec. 1 (the F-Principle); filtering method on CIFAR-10",
            f"delta {delta:g} (labels' variance: {{share_low_{key}:.0%}} low, {{share_high_{key}:.0%}} high): mean "
            f"normalised e_high - e_low over {{cifar_epochs:.0f}} epochs and {{cifar_seeds:.0f}} seeds "
            f"{{gap_{key}:+.3f}}",
            agree,
            "the normalised low-frequency error falls faster than the high-frequency one" if agree else
            "the normalised high-frequency error falls at least as fast as the low-frequency one",
            quote=QUOTE, criterion=CRITERION_IMAGES, interval=gap, models=("natural",), interval_format="+.3f")
    summary.number("separating_deltas", len(separating))
    summary.table(
        "Filtering method on CIFAR-10: each delta's split of the labels and the mean normalised gap e_high - e_low "
        "(positive: low fitted first) with its 95 % interval, and per seed (read only where the kernel separates)",
        ["delta", "labels' variance in K y", "in y - K y", "separates", "gap [95 % CI]", "gap per seed"], rows,
        fmt="{:.1%}")


def toy_projection(s, summary: Summary) -> None:
    """Part 2: an MLP fitting sin x + sin 3x + sin 5x; relative DFT error per frequency over steps."""
    seeds, max_steps, every = s.pick(10, 30), s.pick(4000, 20000), 10
    n = 64  # grid points on [-pi, pi): frequencies up to 31 are resolved, k = 1, 3, 5 exactly
    x = -math.pi + 2 * math.pi * torch.arange(n, dtype=torch.float32) / n
    target = sum(torch.sin(k * x) for k in FREQUENCIES)
    k = torch.tensor(FREQUENCIES, dtype=torch.float32)
    runs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is many times faster than several competing
    try:
        for seed in range(s.seed, s.seed + seeds):
            runs.append(fit_toy(x, target, k, seed=seed, max_steps=max_steps, every=every))
    finally:
        torch.set_num_threads(threads)

    steps_per_freq = torch.tensor([r["fitted"] for r in runs], dtype=torch.float64)  # [seeds, freqs]
    never = max_steps + every
    steps_per_freq = torch.where(steps_per_freq < 0, torch.full_like(steps_per_freq, never), steps_per_freq)
    median = steps_per_freq.median(dim=0).values
    ordered = (steps_per_freq[:, 1:] > steps_per_freq[:, :-1]).all(dim=1)
    summary.number("toy_seeds", seeds)
    summary.number("toy_max_steps", max_steps)
    for j, freq in enumerate(FREQUENCIES):
        summary.number(f"toy_k{freq}_median_step", median[j])
    summary.number("toy_seeds_ordered", ordered.sum())
    summary.number("toy_final_mse", torch.tensor([r["mse"] for r in runs]).median())
    summary.table(
        f"1-D toy: first step with relative DFT error < {THRESHOLD_TOY:.0%} per seed ({never} = not within the run)",
        ["seed"] + [f"k = {freq}" for freq in FREQUENCIES],
        [[str(s.seed + i), *row] for i, row in enumerate(steps_per_freq.tolist())], fmt="{:.0f}",
    )
    plot_toy(x, target, runs[0], s.out / "toy_1d.png",
             f"MLP 1-200-200-100-1 (tanh) fitting sin x + sin 3x + sin 5x on {n} points, seed {s.seed}")
    summary.figure(s.out / "toy_1d.png",
                   "1-D toy (seed 0): the fit at a few steps (left) and the relative DFT error at k = 1, 3, 5 (right)")
    share = bootstrap(lambda o: o.mean(1), ordered.double())
    summary.number("toy_share_ordered", share.estimate)
    summary.finding(
        "Spectral bias: a network fitting a 1-D target learns its low-frequency components first; the step at "
        "which frequency k is fitted grows with k",
        "Xu et al. 1807.01251, abstract and Fig. 1",
        f"median step to {THRESHOLD_TOY:.0%} DFT error: k=1 at {{toy_k1_median_step:.0f}}, k=3 at "
        "{toy_k3_median_step:.0f}, k=5 at {toy_k5_median_step:.0f}; strictly increasing in "
        "{toy_seeds_ordered:.0f} of {toy_seeds:.0f} seeds",
        share.low > 0.5,
        "the fitting step grows with k in most seeds" if share.low > 0.5 else "the order is not stable across seeds",
        quote=QUOTE_TOY, criterion=CRITERION_TOY, interval=share, models=(), interval_format=".2f",
        sample="seeds")


def fit_toy(x: torch.Tensor, target: torch.Tensor, k: torch.Tensor, *, seed: int, max_steps: int,
            every: int) -> dict:
    """Full-batch Adam on an MLP 1-200-200-100-1 (tanh), as in Xu et al.'s 1-D demos; errors every ``every`` steps."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(),
                        nn.Linear(200, 100), nn.Tanh(), nn.Linear(100, 1))
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    inputs = x[:, None]
    fitted = [-1] * len(k)
    steps, errors, snapshots = [], [], {}
    for step in range(max_steps + 1):
        out = net(inputs)[:, 0]
        if step % every == 0:
            err = projection_errors(x, target, out.detach(), k)
            steps.append(step)
            errors.append(err.tolist())
            for j, e in enumerate(err.tolist()):
                if fitted[j] < 0 and e < THRESHOLD_TOY:
                    fitted[j] = step
            if step in (0, 100, 300, 1000):
                snapshots[step] = out.detach().clone()
            if min(fitted) >= 0 and step >= 1000:
                break
        if step == max_steps:
            break
        loss = (out - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    snapshots[step] = out.detach().clone()
    return {"fitted": fitted, "steps": steps, "errors": errors, "snapshots": snapshots,
            "mse": float((out.detach() - target).pow(2).mean())}


def plot_toy(x: torch.Tensor, target: torch.Tensor, run: dict, path, title: str) -> None:
    fig = Figure(figsize=(8.0, 3.2))
    fig.suptitle(title, fontsize=9)
    left, right = fig.subplots(1, 2)
    left.plot(x, target, color="black", linewidth=2, label="target")
    for step, out in sorted(run["snapshots"].items()):
        left.plot(x, out, linewidth=1, label=f"step {step}")
    left.set_xlabel("x", fontsize=8)
    left.set_ylabel("f(x): target and fit", fontsize=8)
    left.legend(fontsize=6)
    errors = torch.tensor(run["errors"])
    for j, freq in enumerate(FREQUENCIES):
        right.plot(run["steps"], errors[:, j], label=f"k = {freq}")
    right.axhline(THRESHOLD_TOY, color="gray", linestyle=":", linewidth=1)
    right.set_yscale("log")
    right.set_xlabel("step", fontsize=8)
    right.set_ylabel("relative DFT error", fontsize=8)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    plots.save_figure(fig, path, dpi=80)


if __name__ == "__main__":
    main()
