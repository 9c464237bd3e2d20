"""Bootstrap intervals over images: coverage, pairing and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from bandguard.bench.stats import Interval, bootstrap, mean_interval, paired_difference


def test_mean_interval_matches_the_binomial_standard_error() -> None:
    """For 0/1 errors the bootstrap SE of the mean is the binomial sqrt(p (1 - p) / n)."""
    g = torch.Generator().manual_seed(0)
    errors = (torch.rand(1000, generator=g) < 0.3).float()
    ci = mean_interval(errors)
    p = float(errors.mean())
    assert ci.estimate == pytest.approx(p)
    assert ci.se == pytest.approx(math.sqrt(p * (1 - p) / 1000), rel=0.1)
    assert ci.low < p < ci.high
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * ci.se, rel=0.15)
    assert ci.n == 1000 and ci.level == 0.95


def test_the_interval_covers_the_true_mean_about_as_often_as_its_level() -> None:
    g = torch.Generator().manual_seed(1)
    hits = 0
    for _ in range(60):
        sample = (torch.rand(300, generator=g) < 0.4).float()
        hits += not mean_interval(sample, resamples=400, generator=g).excludes(0.4)
    assert 50 <= hits <= 60  # 95 % nominal: 57 expected, 50 is about 3 SE below


def test_pairing_removes_the_shared_per_image_difficulty() -> None:
    """Two models that share most per-image variation: the paired interval of their difference is
    much narrower than what unpaired standard errors would give, and it excludes zero."""
    g = torch.Generator().manual_seed(2)
    difficulty = torch.rand(500, generator=g)
    a = difficulty + 0.02 + 0.01 * torch.randn(500, generator=g)
    b = difficulty + 0.01 * torch.randn(500, generator=g)
    diff = paired_difference(a, b)
    assert diff.excludes(0.0) and diff.estimate == pytest.approx(float(a.mean() - b.mean()))
    unpaired_se = math.sqrt(float(a.var() + b.var()) / 500)
    assert diff.se < unpaired_se / 5


def test_bootstrap_takes_any_statistic_of_paired_columns() -> None:
    g = torch.Generator().manual_seed(3)
    low = (torch.rand(400, generator=g) < 0.2).float()
    high = (torch.rand(400, generator=g) < 0.5).float()
    ratio = bootstrap(lambda lo, hi: lo.mean(1) / hi.mean(1), low, high)
    assert ratio.estimate == pytest.approx(float(low.mean() / high.mean()))
    assert ratio.low < ratio.estimate < ratio.high and ratio.excludes(1.0)


def test_the_same_generator_seed_gives_the_same_interval() -> None:
    x = torch.arange(50.0)
    assert mean_interval(x) == mean_interval(x)  # the default is a fixed seed
    first = mean_interval(x, generator=torch.Generator().manual_seed(5))
    assert first == mean_interval(x, generator=torch.Generator().manual_seed(5))
    assert isinstance(first, Interval) and first.format(".1f").startswith("24.5 [")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mean_interval(torch.ones(5, 2)), "values must be a 1-D tensor"),
        (lambda: mean_interval(torch.tensor([1.0, float("nan")])), "finite"),
        (lambda: mean_interval(torch.ones(1)), "at least 2 images"),
        (lambda: paired_difference(torch.ones(5), torch.ones(6)), "N = 5"),
        (lambda: mean_interval(torch.ones(5), resamples=10), "resamples"),
        (lambda: mean_interval(torch.ones(5), level=1.0), "level"),
        (lambda: bootstrap(lambda a: a, torch.ones(5)), "one value per resample"),
        (lambda: bootstrap(lambda a: a.mean(1)), "at least one column"),
    ],
)
def test_bad_input_names_the_argument(call, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        call()
