"""Frequency principle: networks fit the low frequencies of their target first (Xu et al.).

Reproduces Xu et al., "Frequency Principle: Fourier Analysis Sheds Light on Deep Neural Networks"
(arXiv 1901.06523) and "Training behavior of deep neural network in frequency domain"
(arXiv 1807.01251), two ways:

1. CIFAR-10, *filtering method*: a ``cifar_small`` net is trained on a fixed random subset of the
   training images with :func:`bandguard.training.train`, watched by
   :class:`bandguard.spectral.FPrincipleMonitor`: on a reference set of those training images the
   Gaussian kernel ``K`` (variance delta) splits labels and softmax outputs into a low part ``K y``
   and a high part ``y - K y``, and the relative errors ``e_low``, ``e_high`` are recorded every
   epoch for several deltas. Claim: ``e_low`` falls earlier than ``e_high``.
2. A 1-D toy, *projection method* on a line: an MLP fits ``sin x + sin 3x + sin 5x`` on a grid of
   ``[-pi, pi)``; the relative DFT error of its output at k = 1, 3, 5
   (:func:`bandguard.spectral.fprinciple.projection_errors`) is recorded over the training steps.
   Claim: the step at which frequency k is fitted grows with k (spectral bias).

Quick mode trains on 2,000 random CIFAR-10 images (a reference set of 1,000 of them) and fits the
toy from 3 seeds; full mode uses Xu et al.'s 5,000 images (all of them the reference set; their
run took the first 5,000, which in a class-by-class image folder would be one class, so ours are a
fixed random draw) and 10 seeds.

    BANDGUARD_DATA=/path/to/data python examples/frequency_principle.py --quick
    BANDGUARD_DATA=/path/to/data python examples/frequency_principle.py --device cuda
"""

from __future__ import annotations

import math

import torch
from _common import Summary, setup, test_images
from matplotlib.figure import Figure
from torch import nn

from bandguard.data import load_dataset
from bandguard.models import create_model
from bandguard.spectral import FPrincipleMonitor, plots
from bandguard.spectral.fprinciple import projection_errors
from bandguard.training import TrainConfig, evaluate, subset, train

THRESHOLD_IMAGES = 0.5  # e_low / e_high "fitted" below this (half the initial error scale)
THRESHOLD_TOY = 0.1  # a toy frequency is "fitted" once its relative DFT error is below 10 %
# Kernel variances. CIFAR-10's squared nearest-neighbour distances (1,000 images in [0, 1]) are about
# 50-170: delta 10 keeps K near the identity (mean self-weight ~0.9), delta 30 averages over tens of
# neighbours. Larger deltas average so widely that K y is about the class frequencies, which an untrained
# net's near-uniform softmax already matches (e_low starts below any threshold: nothing to watch).
DELTAS = (10.0, 20.0, 30.0)
FREQUENCIES = (1, 3, 5)  # the toy target's components, sin(k x)


def main() -> None:
    s = setup(__file__, __doc__)
    summary = Summary(
        s, "Frequency principle (Xu et al. 1901.06523, 1807.01251)",
        "Low frequencies of the target are fitted first: the filtering method's e_low and e_high during "
        "training of a cifar_small net on a random CIFAR-10 subset, and the DFT error per frequency of a "
        "1-D MLP fitting sin x + sin 3x + sin 5x.",
    )
    images_filtering(s, summary)
    toy_projection(s, summary)
    summary.write()


def images_filtering(s, summary: Summary) -> None:
    """Part 1: FPrincipleMonitor on a cifar_small training run (filtering method)."""
    n_train, n_ref, epochs = s.pick(2000, 5000), s.pick(1000, 5000), s.pick(30, 60)
    train_set = load_dataset("cifar10", "train")
    x, y = subset(train_set.images, train_set.labels, n_train, seed=s.seed)
    ref_x, ref_y = subset(x, y, n_ref, seed=s.seed + 1)
    monitor = FPrincipleMonitor(ref_x.float().div(255).to(s.device), ref_y.to(s.device), deltas=DELTAS,
                                num_classes=10)
    # No augmentation: the principle is about how the net fits its training targets, so it is trained
    # until it fits them (one-cycle schedule, annealed to zero).
    config = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, seed=s.seed, arch="cifar_small", dataset="cifar10")
    with torch.random.fork_rng():
        torch.manual_seed(s.seed)
        model = create_model("cifar_small")
    model.to(s.device)
    log = train(model, (x, y), config, callbacks=[monitor], device=s.device, progress=False)
    result = monitor.result()
    plots.plot_fprinciple(result, s.out / "fprinciple_cifar10.png", write_data=False)
    summary.figure(s.out / "fprinciple_cifar10.png",
                   f"e_low (solid) and e_high (dashed) per epoch, cifar_small on {n_train} CIFAR-10 images, "
                   f"reference set {n_ref}")

    summary.number("cifar_train_images", n_train)
    summary.number("cifar_reference_images", n_ref)
    summary.number("cifar_epochs", epochs)
    summary.number("cifar_train_acc", log.history[-1]["train_acc"])
    summary.number("cifar_train_acc_eval", evaluate(model, x, y, device=s.device))
    summary.number("cifar_test_acc", evaluate(model, *test_images("cifar10", s.pick(1000, 10000), seed=s.seed),
                                              device=s.device))
    low, high = result.first_below(THRESHOLD_IMAGES, "low"), result.first_below(THRESHOLD_IMAGES, "high")
    never = epochs + 1  # "not within the run", recorded as one epoch past its end
    rows, earlier = [], []
    for j, delta in enumerate(DELTAS):
        key = f"d{delta:g}"
        lo = summary.number(f"cifar_{key}_epoch_low", never if low[delta] is None else low[delta])
        hi = summary.number(f"cifar_{key}_epoch_high", never if high[delta] is None else high[delta])
        summary.number(f"cifar_{key}_self_weight", result.self_weight[j])
        summary.number(f"cifar_{key}_initial_low", result.e_low[0][j])
        summary.number(f"cifar_{key}_initial_high", result.e_high[0][j])
        summary.number(f"cifar_{key}_final_low", result.e_low[-1][j])
        summary.number(f"cifar_{key}_final_high", result.e_high[-1][j])
        earlier.append(lo < hi)
        rows.append([f"{delta:g}", result.self_weight[j], result.e_low[0][j], result.e_high[0][j], lo, hi,
                     result.e_low[-1][j], result.e_high[-1][j]])
    summary.number("cifar_deltas_low_first", sum(earlier))
    summary.number("cifar_deltas", len(DELTAS))
    summary.table(
        f"Filtering method on CIFAR-10: first epoch with e < {THRESHOLD_IMAGES} ({never} = not within the run)",
        ["delta", "mean self-weight of K", "initial e_low", "initial e_high", "epoch e_low", "epoch e_high",
         "final e_low", "final e_high"],
        rows, fmt="{:.3g}",
    )
    summary.finding(
        "On real images the low-frequency part of the training labels is fitted before the high-frequency "
        "part: e_low falls earlier than e_high, for every delta",
        "Xu et al. 1901.06523, Fig. 4 (filtering method, CIFAR-10)",
        f"first epoch below {THRESHOLD_IMAGES}: e_low at {{cifar_d10_epoch_low:.0f}} / {{cifar_d20_epoch_low:.0f}} / "
        "{cifar_d30_epoch_low:.0f}, e_high at {cifar_d10_epoch_high:.0f} / {cifar_d20_epoch_high:.0f} / "
        "{cifar_d30_epoch_high:.0f} (delta 10 / 20 / 30); e_low first for {cifar_deltas_low_first:.0f} of "
        "{cifar_deltas:.0f} deltas; training accuracy at the end {cifar_train_acc_eval:.1%}",
        all(earlier),
        "criterion: e_low's epoch strictly before e_high's for every delta; "
        + ("it holds at every delta." if all(earlier) else
           "it fails at some delta (a tie at epoch resolution or e_high first)."),
    )


def toy_projection(s, summary: Summary) -> None:
    """Part 2: an MLP fitting sin x + sin 3x + sin 5x; relative DFT error per frequency over steps."""
    seeds, max_steps, every = s.pick(3, 10), s.pick(4000, 20000), 10
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
    plot_toy(x, target, runs[0], s.out / "toy_1d.png")
    summary.figure(s.out / "toy_1d.png",
                   "1-D toy (seed 0): the fit at a few steps (left) and the relative DFT error at k = 1, 3, 5 (right)")
    summary.finding(
        "Spectral bias: a network fitting a 1-D target learns its low-frequency components first; the step at "
        "which frequency k is fitted grows with k",
        "Xu et al. 1807.01251, Fig. 1; 1901.06523, Sec. 3",
        f"median step to {THRESHOLD_TOY:.0%} DFT error: k=1 at {{toy_k1_median_step:.0f}}, k=3 at "
        "{toy_k3_median_step:.0f}, k=5 at {toy_k5_median_step:.0f}; strictly increasing in "
        "{toy_seeds_ordered:.0f} of {toy_seeds:.0f} seeds",
        bool(ordered.all()),
        "criterion: the step strictly increases with k in every seed; "
        + ("it does." if bool(ordered.all()) else "it does not in some seed."),
    )


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


def plot_toy(x: torch.Tensor, target: torch.Tensor, run: dict, path) -> None:
    fig = Figure(figsize=(8.0, 3.0))
    left, right = fig.subplots(1, 2)
    left.plot(x, target, color="black", linewidth=2, label="target")
    for step, out in sorted(run["snapshots"].items()):
        left.plot(x, out, linewidth=1, label=f"step {step}")
    left.set_xlabel("x", fontsize=8)
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
