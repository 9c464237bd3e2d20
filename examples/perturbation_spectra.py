"""PGD perturbation spectra of naturally versus adversarially trained CIFAR-10 models.

Reproduces Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv
1906.08988): adversarial perturbations of a naturally trained model are not a high-frequency
phenomenon (their spectrum is spread over the frequencies, not concentrated at the high ones),
and adversarial training biases them towards low frequencies.

Models: the zoo's ``cifar_fast`` (natural) and ``cifar_fast_adversarial`` (PGD-2 at 8/255), one net
trained on the full training set (weights in ``examples/models/``). Attack: Linf PGD at eps 8/255,
steps of 2/255, no random start (a uniform start would add white noise of its own to every
perturbation), the final iterate. The measure, fixed before the run: the share of the
perturbations' energy ``E||delta||^2`` outside the centred disc of radius 8 (the lowest ~20 % of
the 32 x 32 frequency positions), against random sign noise of the same Linf size (a flat
spectrum). Intervals: 95 % percentile bootstrap over the images, paired between the two models
(the same images).

    BANDGUARD_DATA=/path/to/data python examples/perturbation_spectra.py --quick   # 500 images, CPU
    BANDGUARD_DATA=/path/to/data python examples/perturbation_spectra.py           # 1,000 images
"""

from __future__ import annotations

import torch
from _common import FAMILY, Summary, reference, setup, test_images

from bandguard.attacks import create_attack
from bandguard.bench.stats import bootstrap
from bandguard.spectral import perturbation_spectrum, plots
from bandguard.training import evaluate

EPS = 8 / 255
RADIUS = 8.0
LABELS = ("natural", "adversarial")

# Criteria, written before the run (the verdicts below only read them).
CRITERION_NATURAL = ("the 95 % bootstrap interval of (natural high-frequency share - flat-spectrum share) "
                     "does not lie above 0: the natural model's perturbations put no more energy at high "
                     "frequencies than a flat spectrum does")
CRITERION_ADVERSARIAL = ("the paired 95 % interval of (adversarial - natural) high-frequency share lies "
                         "below 0")
# Paraphrases: the body text of Yin et al. could not be read here (see examples/README.md).
QUOTE_NATURAL = ("(paraphrase of Sec. 4) adversarial examples are not strictly a high frequency phenomenon: "
                 "the perturbations of the naturally trained model spread over the whole spectrum")
QUOTE_ADVERSARIAL = ("(paraphrase of Sec. 4) adversarial training biases these perturbations towards the "
                     "lower frequencies")


def share(high: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Energy share outside the radius of resampled ``[B, N]`` per-image energies -> ``[B]``."""
    return high.sum(1) / total.sum(1)


def main() -> None:
    settings = setup(__file__, __doc__)
    steps = 20
    n = settings.pick(500, 1000)
    summary = Summary(
        settings, "PGD perturbation spectra: natural versus adversarial training",
        f"Linf PGD (eps 8/255, {steps} steps of 2/255, no random start) against the zoo's "
        f"{FAMILY['natural']} and {FAMILY['adversarial']} on the same {n} CIFAR-10 test images. High-frequency "
        f"share: the perturbations' energy outside the centred disc of radius {RADIUS:g}; random sign noise of "
        "the same Linf size has a flat spectrum and serves as the reference.",
    )
    x, y = test_images("cifar10", n, seed=settings.seed)
    x, y = x.to(settings.device), y.to(settings.device)
    summary.number("n_images", n)
    summary.number("steps", steps)
    models, metas = {}, {}
    for label in LABELS:
        models[label], metas[label] = reference(FAMILY[label], settings)
    attack = create_attack("pgd", eps=EPS, steps=steps, step_size=2 / 255, random_start=False)

    comparison = {}
    for label, model in models.items():  # one attack per model: its spectrum and its accuracy
        result = attack(model, x, y)[0]
        comparison[label] = perturbation_spectrum(result.x_adv - x, radius=RADIUS)
        clean = summary.number(f"{label}_clean", evaluate(model, x, y, device=settings.device))
        robust = summary.number(f"{label}_robust", result.robust_accuracy)
        summary.model(label, metas[label], **{"clean on these images": clean, f"PGD-{steps} on these images": robust})
        summary.number(f"{label}_hf", comparison[label].high_fraction)
    noise = EPS * torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(settings.seed)).mul(2).sub(1)
    flat = perturbation_spectrum(noise, radius=RADIUS)
    summary.number("noise_hf", flat.high_fraction)
    nat, adv = comparison["natural"], comparison["adversarial"]

    radial = {label: comparison[label].radial for label in models}
    radial["sign noise"] = flat.radial
    summary.table(
        "Accuracy (clean, under PGD) and the perturbations' high-frequency energy share",
        ["perturbation", "clean accuracy", "PGD accuracy", "high-frequency share"],
        [[label, summary.numbers[f"{label}_clean"], summary.numbers[f"{label}_robust"],
          summary.numbers[f"{label}_hf"]] for label in models]
        + [["random sign noise", "-", "-", summary.numbers["noise_hf"]]],
    )
    summary.table(
        "Radial profile: mean |F(delta)| per distance from the centre (x 1000)",
        ["distance", *radial],
        [[str(d), *[1000 * float(p[d]) for p in radial.values()]] for d in range(len(radial["natural"]))],
        fmt="{:.2f}",
    )

    path = settings.out / "spectra_pgd.png"
    plots.plot_spectra({**comparison, "sign noise": flat},
                       path, title=f"E|F(delta)|, PGD-{steps} at 8/255, n = {n}", write_data=False)
    summary.figure(path, "Mean centred amplitude spectrum of the PGD perturbations (low frequencies at the "
                         "centre, log colour scale shared by the panels) for the natural and adversarially "
                         "trained models, and of random sign noise")
    path = settings.out / "radial_pgd.png"
    plots.plot_radial_profiles(radial, path, write_data=False)
    summary.figure(path, "Radial profiles of those spectra (azimuthal mean of |F(delta)| per distance)")

    # Finding 1: the natural model's perturbations are not concentrated at high frequencies.
    flat_share = summary.numbers["noise_hf"]
    ci = bootstrap(lambda hi, tot: share(hi, tot) - flat_share, nat.high_energy, nat.energy)
    summary.number("natural_vs_flat", ci.estimate)
    agree = not ci.low > 0
    summary.finding(
        "PGD perturbations of a naturally trained model are not concentrated at high frequencies",
        "Yin et al. 1906.08988, Sec. 4",
        "{natural_hf:.1%} of the energy outside radius 8 against {noise_hf:.1%} for a flat spectrum "
        "({natural_vs_flat:+.1%})",
        agree,
        ("their high-frequency share does not exceed a flat spectrum's" + (
            "; it is below it: the energy leans to lower frequencies" if ci.high < 0 else ""))
        if agree else "their high-frequency share exceeds a flat spectrum's",
        quote=QUOTE_NATURAL, criterion=CRITERION_NATURAL, interval=ci, models=("natural",),
    )
    # Finding 2: adversarial training moves them towards low frequencies (paired, same images).
    ci = bootstrap(lambda ha, ta, hn, tn: share(ha, ta) - share(hn, tn),
                   adv.high_energy, adv.energy, nat.high_energy, nat.energy)
    summary.number("adv_minus_nat", ci.estimate)
    summary.finding(
        "Adversarial training moves the PGD perturbations towards low frequencies",
        "Yin et al. 1906.08988, Sec. 4",
        "{adversarial_hf:.1%} of the energy outside radius 8 vs {natural_hf:.1%} for the natural model "
        "({adv_minus_nat:+.1%})",
        ci.high < 0,
        "the adversarially trained model's perturbations put less of their energy at high frequencies"
        if ci.high < 0 else "the paired interval does not lie below 0",
        quote=QUOTE_ADVERSARIAL, criterion=CRITERION_ADVERSARIAL, interval=ci, models=("adversarial", "natural"),
    )
    summary.write()


if __name__ == "__main__":
    main()
