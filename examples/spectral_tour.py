"""A tour of bandguard.spectral on real MNIST: every plot kind, plus a Markdown summary.

Reproduces, at laptop scale, the observations of Yin et al. (arXiv 1906.08988), Wang et al.
(arXiv 1905.13545) and Xu et al. (arXiv 1901.06523):

1. Fourier heat maps of a naturally and an adversarially trained model;
2. PGD perturbation spectra of both, side by side, and their radial profiles;
3. accuracy on low- and high-pass filtered test images;
4. corruption spectra E|F(C(X) - X)| with the accuracy under each corruption;
5. the spectra of the first conv layers' kernels;
6. the frequency principle during training (e_low falls before e_high).

Needs the data sets through ``$BANDGUARD_DATA`` (e.g. ``BANDGUARD_DATA=../shared/data``). Trained
models are cached in ``~/.cache/bandguard/examples`` so a second run only redraws.

    BANDGUARD_DATA=../shared/data python examples/spectral_tour.py --out docs/images
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from bandguard.attacks import FGSM, create_attack
from bandguard.data import load_dataset
from bandguard.models import create_model, load_checkpoint, save_checkpoint
from bandguard.spectral import (
    FPrincipleMonitor,
    compare_attack_spectra,
    corruption_spectrum,
    filtered_accuracy,
    fourier_heatmap,
    kernel_spectrum,
    plots,
)
from bandguard.training import TrainConfig, evaluate, train


def cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bandguard" / "examples"


def trained(name: str, train_set, config: TrainConfig, callbacks=()) -> torch.nn.Module:
    """Train ``mnist_cnn`` with ``config`` or load it from the cache (callbacks run on training only)."""
    path = cache_dir() / f"tour-{name}-{config.limit}-{config.epochs}.pt"
    if path.exists() and not callbacks:
        return load_checkpoint(path).build().eval()
    torch.manual_seed(config.seed)
    model = create_model("mnist_cnn")
    train(model, train_set, config, callbacks=list(callbacks), progress=False)
    save_checkpoint(path, model, arch="mnist_cnn", dataset="mnist")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--train-limit", type=int, default=4000, help="training images per model")
    parser.add_argument("-n", type=int, default=100, help="test images for the heat maps")
    parser.add_argument("--eps", type=float, default=8.0,
                        help="heat map L2 norm (Yin et al. use 4 on CIFAR-10; MNIST nets need more)")
    args = parser.parse_args()
    root = os.environ.get("BANDGUARD_DATA")
    if not root:
        raise SystemExit("set BANDGUARD_DATA to the folder holding mnist.pkl.gz")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    train_set = load_dataset("mnist", "train", root=root, download=False)
    test_set = load_dataset("mnist", "test", root=root, download=False)
    x, y = test_set.tensors(1000)
    ref_x, ref_y = train_set.tensors(1000)

    # Natural training, watched by the F-principle monitor.
    monitor = FPrincipleMonitor(ref_x, ref_y, deltas=(3.0, 10.0, 30.0))
    natural_cfg = TrainConfig(epochs=3, batch_size=64, lr=0.02, seed=0, limit=args.train_limit, amp="off")
    natural = trained("natural", train_set, natural_cfg, callbacks=[monitor])
    fp = monitor.result()
    plots.plot_fprinciple(fp, out / "fprinciple.png")

    # Fast adversarial training (FGSM with random start, Linf eps 0.2).
    adv_cfg = TrainConfig(epochs=3, batch_size=64, lr=0.02, seed=0, limit=args.train_limit, amp="off",
                          adversary=FGSM(eps=0.2, random_start=True))
    adversarial = trained("fgsm_rs", train_set, adv_cfg)
    acc = {name: evaluate(m, x, y) for name, m in (("natural", natural), ("adversarial", adversarial))}

    # 1. Heat maps.
    heat = {}
    for name, model in (("natural", natural), ("adversarial", adversarial)):
        heat[name] = fourier_heatmap(model, x[: args.n], y[: args.n], eps=args.eps,
                                     generator=torch.Generator().manual_seed(0))
        plots.plot_heatmap(heat[name], out / f"heatmap_{name}.png", title=f"{name} MNIST CNN")

    # 2. PGD perturbation spectra, side by side.
    pgd = create_attack("pgd", eps=0.1, steps=10)
    comparison = compare_attack_spectra([natural, adversarial], pgd, x[:200], y[:200])
    plots.plot_spectra(comparison, out / "spectra_pgd.png", title="E|F(x_adv - x)|, PGD 0.1")
    plots.plot_radial_profiles(comparison, out / "radial_pgd.png")

    # 3. Filtered accuracy.
    radii = [1, 2, 4, 6, 8, 10, 14, 20]
    filt = {
        f"{name} {kind}-pass": filtered_accuracy(model, x, y, radii, kind=kind)
        for name, model in (("natural", natural), ("adversarial", adversarial))
        for kind in ("low", "high")
    }
    plots.plot_filtered_accuracy(filt, out / "filtered_accuracy.png")

    # 4. Corruption spectra.
    corr = corruption_spectrum(natural, x[:500], y[:500], severity=3, generator=torch.Generator().manual_seed(0))
    plots.plot_corruption_spectra(corr, out / "corruption_spectra.png")

    # 5. Kernel spectra.
    kernels = {name: kernel_spectrum(m) for name, m in (("natural", natural), ("adversarial", adversarial))}
    plots.plot_kernel_spectra(kernels["natural"], out / "kernel_spectra.png")

    write_summary(out / "spectral_tour.md", acc, heat, comparison, filt, corr, kernels, fp,
                  time.perf_counter() - start)
    print(f"wrote the figures and spectral_tour.md into {out} in {time.perf_counter() - start:.0f} s")


def ring_mean(heatmap: torch.Tensor, lo: float, hi: float) -> float:
    from bandguard.fourier import radial_distance

    d = radial_distance(*heatmap.shape)
    return float(heatmap[(d >= lo) & (d < hi)].mean())


def write_summary(path: Path, acc, heat, comparison, filt, corr, kernels, fp, seconds: float) -> None:
    lines = [
        "# Spectral tour (MNIST, `examples/spectral_tour.py`)",
        "",
        f"Two `mnist_cnn` models trained on the first MNIST training images: natural "
        f"({acc['natural']:.1%} test accuracy on 1,000 test images) and fast adversarial training "
        f"(FGSM-RS, Linf 0.2; {acc['adversarial']:.1%}). Generated in {seconds:.0f} s on a CPU.",
        "",
        "## Fourier heat maps (Yin et al. 1906.08988)",
        "",
        "| model | clean error | mean error, radius < 4 | mean error, radius >= 10 |",
        "|---|---|---|---|",
    ]
    for name, r in heat.items():
        lines.append(f"| {name} | {r.clean:.1%} | {ring_mean(r.heatmap, 0, 4):.1%} "
                     f"| {ring_mean(r.heatmap, 10, 99):.1%} |")
    lines += ["", f"eps = {next(iter(heat.values())).eps:g} (L2 per channel), "
              f"n = {next(iter(heat.values())).n} images. Figures: `heatmap_natural.png`, "
              "`heatmap_adversarial.png`.", "",
              "## PGD perturbation spectra", "", "| model | high-frequency energy share (radius >= 7) |",
              "|---|---|"]
    for name, s in zip(comparison.names, comparison.spectra):
        lines.append(f"| {name} | {s.high_fraction:.1%} |")
    lines += ["", "Figures: `spectra_pgd.png`, `radial_pgd.png`.", "",
              "## Accuracy on filtered images", "",
              "| model, filter | " + " | ".join(f"r={r:g}" for r in next(iter(filt.values())).radii) + " |",
              "|---|" + "---|" * len(next(iter(filt.values())).radii)]
    for name, f in filt.items():
        lines.append(f"| {name} | " + " | ".join(f"{a:.0%}" for a in f.accuracy) + " |")
    lines += ["", "Figure: `filtered_accuracy.png`.", "", "## Corruptions (severity 3, natural model)", "",
              f"Clean accuracy {corr.clean_accuracy:.1%}.", "",
              "| corruption | accuracy | high-frequency energy share |", "|---|---|---|"]
    for r in corr.results:
        lines.append(f"| {r.name} | {r.accuracy:.1%} | {r.high_fraction:.1%} |")
    lines += ["", "Figure: `corruption_spectra.png`.", "", "## Kernel spectra", "",
              "| layer | natural high-frequency share | adversarial |", "|---|---|---|"]
    for a, b in zip(kernels["natural"].layers, kernels["adversarial"].layers):
        lines.append(f"| {a.name} {a.kernel_shape[-2]}x{a.kernel_shape[-1]} | {a.high_fraction:.1%} "
                     f"| {b.high_fraction:.1%} |")
    low, high = fp.first_below(0.5, "low"), fp.first_below(0.5, "high")
    lines += ["", "Figure: `kernel_spectra.png` (natural).", "",
              "## Frequency principle (Xu et al. 1901.06523)", "",
              "| delta | first epoch e_low < 0.5 | first epoch e_high < 0.5 | final e_low | final e_high |",
              "|---|---|---|---|---|"]
    for j, delta in enumerate(fp.deltas):
        lines.append(f"| {delta:g} | {low[delta]} | {high[delta]} | {fp.e_low[-1][j]:.3f} "
                     f"| {fp.e_high[-1][j]:.3f} |")
    lines += ["", f"Reference set: {fp.n} training images. Figure: `fprinciple.png`.", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
