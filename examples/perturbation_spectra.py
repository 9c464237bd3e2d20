"""PGD perturbation spectra of naturally versus adversarially trained CIFAR-10 models.

Reproduces Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv
1906.08988): the mean amplitude spectrum ``E|F(x_adv - x)|`` of PGD perturbations against a
naturally trained model spreads over high frequencies, while against an adversarially trained one
it concentrates at low frequencies.

Models (``bandguard.bench.zoo``): ``cifar_small`` (natural) and ``cifar_small_adversarial`` (FGSM-RS
at 8/255, Wong et al. 2001.03994). Attack: Linf PGD at eps 8/255, steps of 2/255, no random start
(a uniform start would add white noise of its own to every perturbation), the final iterate.
The high-frequency fraction is the share of ``E||delta||^2`` outside the centred disc of radius 8
(the lowest ~20 % of the 32 x 32 frequency positions); random sign noise of the same size (a flat
spectrum) is the reference.

    PYTHONPATH=. BANDGUARD_DATA=/path/to/data python examples/perturbation_spectra.py --quick
    # ~65 s with both models cached (2 shared CPU cores, load ~12), plus ~75 s and ~150 s to train them
    PYTHONPATH=. BANDGUARD_DATA=/path/to/data python examples/perturbation_spectra.py  # full: GPU
"""

from __future__ import annotations

import torch
from _common import Summary, reference, setup, test_images

from bandguard.attacks import create_attack
from bandguard.spectral import compare_attack_spectra, perturbation_spectrum, plots
from bandguard.training import evaluate

EPS = 8 / 255
RADIUS = 8.0
MODELS = {"natural": "cifar_small", "adversarial": "cifar_small_adversarial"}


def main() -> None:
    settings = setup(__file__, __doc__)
    steps = settings.pick(10, 20)
    summary = Summary(
        settings, "PGD perturbation spectra: natural versus adversarial training",
        f"Linf PGD (eps 8/255, {steps} steps of 2/255, no random start) against `cifar_small` trained "
        "naturally and adversarially (FGSM-RS 8/255) on CIFAR-10. High-frequency fraction: share of the "
        f"perturbations' energy outside the centred disc of radius {RADIUS:g}; random sign noise of "
        "the same Linf size has a flat spectrum and serves as the reference.",
    )
    x, y = test_images("cifar10", settings.pick(500, 1000), seed=settings.seed)
    x, y = x.to(settings.device), y.to(settings.device)
    summary.number("n_images", len(y))
    summary.number("steps", steps)
    models = {label: reference(recipe, settings)[0] for label, recipe in MODELS.items()}
    attack = create_attack("pgd", eps=EPS, steps=steps, step_size=2 / 255, random_start=False)

    comparison = compare_attack_spectra(list(models.values()), attack, x, y, names=tuple(models), radius=RADIUS)
    for label, model in models.items():
        summary.number(f"{label}_clean", evaluate(model, x, y, device=settings.device))
        summary.number(f"{label}_robust", attack(model, x, y).robust_accuracy[0])
        summary.number(f"{label}_hf", comparison[label].high_fraction)
    noise = EPS * torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(settings.seed)).mul(2).sub(1)
    reference_spectrum = perturbation_spectrum(noise, radius=RADIUS)
    summary.number("noise_hf", reference_spectrum.high_fraction)

    radial = {label: comparison[label].radial for label in models}
    radial["sign noise"] = reference_spectrum.radial
    summary.table(
        "Accuracy (clean, under PGD) and the perturbations' high-frequency energy fraction",
        ["perturbation", "clean accuracy", "PGD accuracy", "high-frequency fraction"],
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
    plots.plot_spectra({**dict(zip(comparison.names, comparison.spectra)), "sign noise": reference_spectrum},
                       path, title="E|F(delta)|", write_data=False)
    summary.figure(path, "Mean centred amplitude spectrum of the PGD perturbations (low frequencies at the "
                         "centre) for the natural and adversarially trained models, and of random sign noise")
    path = settings.out / "radial_pgd.png"
    plots.plot_radial_profiles(radial, path, write_data=False)
    summary.figure(path, "Radial profiles of those spectra (azimuthal mean of |F(delta)| per distance)")

    nat, adv = summary.numbers["natural_hf"], summary.numbers["adversarial_hf"]
    summary.finding(
        "PGD perturbations of a naturally trained model concentrate at high frequencies",
        "Yin et al. 1906.08988 (Fig. 3)",
        "{natural_hf:.1%} of the energy outside radius 8 (flat spectrum: {noise_hf:.1%})",
        nat > 0.5,
        ("most of the perturbation's energy lies outside the lowest frequencies"
         + (", more than a flat spectrum puts there" if nat > summary.numbers["noise_hf"]
            else ", though less than a flat spectrum puts there")) if nat > 0.5
        else "most of the perturbation's energy lies at the lowest frequencies",
    )
    summary.finding(
        "PGD perturbations of an adversarially trained model concentrate at low frequencies",
        "Yin et al. 1906.08988 (Fig. 3)",
        "{adversarial_hf:.1%} of the energy outside radius 8 vs {natural_hf:.1%} for the natural model",
        adv < 0.5 and adv < nat,
        "adversarial training leaves the attack mostly low-frequency directions" if adv < 0.5 and adv < nat
        else "the adversarially trained model's perturbations are not mostly low-frequency at this scale",
    )
    summary.write()


if __name__ == "__main__":
    main()
