"""The black-box Fourier-basis attack on natural, Gaussian-augmented and adversarially trained CIFAR-10 nets.

Reproduces the observation of Yin et al., "A Fourier Perspective on Model Robustness in Computer
Vision" (arXiv 1906.08988, Sec. 4): adversarially trained models are most vulnerable to
low-frequency perturbations, and an attacker who sees only the predicted class finds them by
trying single Fourier basis images ``clip(x + s * eps * U_ij)`` (``s = +-1`` per channel, eps the
per-channel L2 norm, pixels in [0, 1]).

The attack is bandguard's ``"fourier"`` (``create_attack`` by registry name). It tries the 514
distinct frequencies of a 32 x 32 image until the model errs, in a random order drawn for each
image, so the first frequency that breaks an image is a fair draw from those that break it (one
order shared by all images would make its first few frequencies break most of them). Per model
and eps the script records the success rate on the images the model classifies correctly, the
queries spent on each success (clean forward included), and where in frequency the successful
basis images lie: each success's frequency is read off its perturbation's amplitude spectrum (the
peak), and the share of low frequencies (distance from the centre < H/4) among them is compared
with that band's share of all frequencies (the share a frequency-blind model would show).

The three nets are the zoo's ``cifar_small``, ``cifar_small_gaussian`` (N(0, 0.1^2) noise) and
``cifar_small_adversarial`` (FGSM with random start at 8/255), one architecture.

    BANDGUARD_DATA=/path/to/data python examples/fourier_attack.py --quick   # 2 CPU cores, 100 images
    BANDGUARD_DATA=/path/to/data python examples/fourier_attack.py           # GPU, 1,000 images
"""

from __future__ import annotations

import dataclasses

import torch
from _common import Summary, reference, setup, test_images
from einops import reduce
from matplotlib.figure import Figure

from bandguard.attacks import AttackResult, create_attack
from bandguard.fourier import amplitude_spectrum, distinct_frequencies, radial_distance
from bandguard.spectral.plots import save_figure

EPSILONS = (1.0, 2.0, 4.0)  # per-channel L2 norms; 4 is Yin et al.'s heat-map eps on CIFAR-10
MODELS = {"natural": "cifar_small", "gaussian": "cifar_small_gaussian", "adversarial": "cifar_small_adversarial"}
FINDING_EPS = 4.0  # the budget the verdicts read


def success_frequencies(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Distance from the centre of each perturbation's dominant frequency: ``[N]``.

    A successful example is ``clip(x + s * eps * U_ij)``: its perturbation's channel-summed
    amplitude spectrum peaks at ``(i, j)`` (and its mirror, at the same distance); clipping
    only adds a weaker spread of other frequencies.
    """
    amplitude = reduce(amplitude_spectrum(x_adv - x), "n c h w -> n (h w)", "sum")
    dist = radial_distance(*x.shape[-2:], device=x.device).flatten()
    return dist[amplitude.argmax(1)]


def attack_each(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int) -> AttackResult:
    """The ``"fourier"`` attack at ``eps`` with its own random frequency order for every image.

    One call shares one order among its images, so the first frequencies of that order would break
    most images alike; an order per image makes each image's breaking frequency a fair draw from
    the frequencies that break it. Results are joined into one :class:`AttackResult`.
    """
    parts = []
    for i in range(x.shape[0]):
        attack = create_attack("fourier", eps=eps, order="random", seed=seed * 1_000_003 + i, batch_size=128)
        parts.append(attack(model, x[i : i + 1], y[i : i + 1])[0])
    joined = {f.name: torch.cat([getattr(p, f.name) for p in parts])
              for f in dataclasses.fields(AttackResult) if isinstance(getattr(parts[0], f.name), torch.Tensor)}
    return dataclasses.replace(parts[0], **joined)


def main() -> None:
    settings = setup(__file__, __doc__)
    n = settings.pick(100, 1000)
    summary = Summary(
        settings, "The Fourier-basis black-box attack on natural, Gaussian-augmented and adversarially "
        "trained CIFAR-10 nets",
        f"Yin et al. (arXiv 1906.08988) Fourier-basis attack (bandguard's 'fourier', a random frequency order "
        f"per image, all 514 distinct frequencies) at per-channel L2 eps {', '.join(f'{e:g}' for e in EPSILONS)} "
        f"on {n} CIFAR-10 test images; success rates and queries are over the images each model classifies "
        "correctly. Low frequencies: distance from the centre < H/4.",
    )
    x, y = test_images("cifar10", n, settings.seed)
    x, y = x.to(settings.device), y.to(settings.device)
    h, w = x.shape[-2:]
    low_radius = h / 4
    tried = distinct_frequencies(h, w)
    tried_dist = radial_distance(h, w)[tried[:, 0], tried[:, 1]]
    chance = summary.number("chance_low", (tried_dist < low_radius).float().mean())
    summary.number("n_images", n)

    rows = []
    fig = Figure(figsize=(8.4, 3.0))
    axes = fig.subplots(1, len(MODELS), sharey=True)
    bins = torch.arange(0, 24, 2.0)
    for ax, (label, recipe) in zip(axes, MODELS.items()):
        model, meta = reference(recipe, settings)
        summary.number(f"test_acc_{label}", meta["test_accuracy"])
        summary.number(f"train_seconds_{label}", meta["train_seconds"])
        for eps in EPSILONS:
            result = attack_each(model, x, y, eps, settings.seed)
            correct = result.clean_pred == result.labels
            broken = result.success & correct
            queries = result.forwards[broken].double()
            dist = success_frequencies(x[broken], result.x_adv[broken])
            key = f"{label}_eps{eps:g}"
            rate = summary.number(f"success_{key}", broken.sum() / correct.sum())
            median = summary.number(f"median_queries_{key}", queries.median() if queries.numel() else 0)
            mean = summary.number(f"mean_queries_{key}", queries.mean() if queries.numel() else 0)
            low = summary.number(f"low_share_{key}", (dist < low_radius).double().mean() if dist.numel() else 0)
            summary.number(f"n_broken_{key}", broken.sum())
            rows.append([label, f"{eps:g}", f"{int(correct.sum())}", rate, f"{median:.0f}", f"{mean:.1f}", low])
            if eps == FINDING_EPS:
                ax.hist(dist.cpu().numpy(), bins=bins.numpy(), color="tab:blue", label="broken")
                # What a frequency-blind model would give: the frequencies' own distances, same total.
                scale = torch.full_like(tried_dist, len(dist) / len(tried_dist))
                ax.hist(tried_dist.numpy(), bins=bins.numpy(), weights=scale.numpy(), histtype="step", color="black",
                        label="chance")
                ax.axvline(low_radius, color="tab:red", lw=1, ls="--")
                ax.set_title(f"{label}: {int(broken.sum())} broken", fontsize=9)
                ax.set_xlabel("distance from centre of the\nbreaking frequency", fontsize=8)
    axes[0].set_ylabel(f"images (eps {FINDING_EPS:g})", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = save_figure(fig, settings.out / "success_frequencies.png", dpi=80)
    summary.figure(path, f"Where the successful basis images lie at eps {FINDING_EPS:g} "
                         f"(dashed: the low band's edge, distance {low_radius:g}; "
                         "black: the spread of all frequencies tried, scaled to the same count)")

    summary.table("Fourier-basis attack per model and eps (success and low share as fractions; queries include "
                  "the clean forward)",
                  ["model", "eps", "correct images", "success rate", "median queries", "mean queries",
                   "low-frequency share of successes"], rows)

    nums, e = summary.numbers, f"eps{FINDING_EPS:g}"
    # Finding 1: the adversarially trained model's successful frequencies concentrate at low frequencies.
    share_adv, share_nat = nums[f"low_share_adversarial_{e}"], nums[f"low_share_natural_{e}"]
    agree = share_adv >= 1.5 * chance and share_adv > share_nat
    summary.finding(
        "Adversarially trained models are most vulnerable to low-frequency perturbations",
        "Yin et al. 1906.08988, Sec. 4 and Fig. 2",
        f"low-frequency share of successes at eps {FINDING_EPS:g}: adversarial {{low_share_adversarial_{e}:.0%}}, "
        f"natural {{low_share_natural_{e}:.0%}}, gaussian {{low_share_gaussian_{e}:.0%}} "
        "(chance {chance_low:.0%})",
        agree,
        "the adversarial model's breaking frequencies are at least 1.5x as often low as chance and more often "
        "than the natural model's" if agree else
        "the adversarial model's breaking frequencies are not at least 1.5x as often low as chance and more "
        "often than the natural model's",
    )
    # Finding 2: the black-box attack breaks most of the adversarially trained model's correct images.
    rate = nums[f"success_adversarial_{e}"]
    summary.finding(
        "A black-box Fourier-basis attack finds the adversarially trained model's errors",
        "Yin et al. 1906.08988, Sec. 4",
        f"adversarial model: {{success_adversarial_{e}:.0%}} of correct images broken at eps {FINDING_EPS:g}, "
        f"median {{median_queries_adversarial_{e}:.0f}} queries (natural {{success_natural_{e}:.0%}}, "
        f"median {{median_queries_natural_{e}:.0f}})",
        rate >= 0.5,
        "it breaks at least half of the correctly classified images" if rate >= 0.5
        else "it breaks fewer than half of the correctly classified images",
    )
    summary.write()


if __name__ == "__main__":
    main()
