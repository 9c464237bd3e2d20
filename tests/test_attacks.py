"""Attack contracts on tiny models: invariants (bounds, eps-ball, model untouched, monotone in eps),
exact query counts, EOT against a randomized model, the Fourier-basis attack's exact answers,
errors, and agreement with torchattacks / foolbox on the same tensors."""

from __future__ import annotations

import itertools
import math

import foolbox as fb
import pytest
import torch
import torchattacks
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bandguard._modes import model_mode
from bandguard.attacks import (
    ATTACKS,
    BPDA,
    FGM,
    FGSM,
    PGD,
    Adversary,
    AttackResult,
    FoolboxAttack,
    FourierAttack,
    FourierGreedy,
    adversarial_example_fn,
    create_attack,
    evaluate_attack,
    fgm,
    fgsm,
    fourier_attack,
    fourier_greedy,
    frequency_order,
    pgd,
)
from bandguard.fourier import fourier_basis


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread beats two that spin against a busy machine (restored)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- tiny models


def tiny_model(c: int = 1, h: int = 8, w: int = 8, classes: int = 3, seed: int = 0,
               dtype: torch.dtype = torch.float32) -> nn.Module:
    """A conv-BN-ReLU-linear net with seeded default initialisation (a few hundred parameters)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(c, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
            nn.Linear(4 * h * w, classes),
        )
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.1, 0.1)
    return model.to(dtype).eval()


def linear_model(c: int = 1, h: int = 8, w: int = 8, classes: int = 2, seed: int = 0) -> nn.Module:
    """A linear classifier centred on the grey image, so small budgets already matter."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        lin = nn.Linear(c * h * w, classes)
    with torch.no_grad():
        lin.bias.copy_(-0.5 * lin.weight.sum(1))
    return nn.Sequential(nn.Flatten(), lin).eval()


def batch(n: int = 16, c: int = 1, h: int = 8, w: int = 8, classes: int = 3, seed: int = 1,
          dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def snapshot(model: nn.Module) -> dict:
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grad": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
        "modes": [m.training for m in model.modules()],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"]
    assert before["requires_grad"] == after["requires_grad"]
    for k, v in before["params"].items():
        assert torch.equal(v, after["params"][k]), k
    for k, v in before["grad"].items():
        assert (v is None and after["grad"][k] is None) or torch.equal(v, after["grad"][k]), k


def within(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, bounds=(0.0, 1.0)) -> None:
    tol = 1e-6 if x.dtype == torch.float64 else 2e-6
    lo, hi = bounds
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert float(x_adv.min()) >= lo and float(x_adv.max()) <= hi
    d = (x_adv - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else torch.linalg.vector_norm(d, dim=1)
    assert float(dist.max()) <= eps * (1 + tol) + tol


# --------------------------------------------------------------------------- properties


ATTACK_FACTORIES = {
    "pgd_linf": lambda eps, b: PGD(eps=eps, steps=3, bounds=b),
    "pgd_l2": lambda eps, b: PGD(eps=eps, norm="l2", steps=3, restarts=2, bounds=b),
    "pgd_margin_l2": lambda eps, b: PGD(eps=eps, norm="l2", steps=2, loss="margin", bounds=b),
    "fgsm": lambda eps, b: FGSM(eps=eps, bounds=b),
    "fgsm_rs": lambda eps, b: FGSM(eps=eps, random_start=True, bounds=b),
    "fgm": lambda eps, b: FGM(eps=eps, bounds=b),
    "fourier": lambda eps, b: FourierAttack(eps=eps, max_queries=20, bounds=b),
    "fourier_greedy": lambda eps, b: FourierGreedy(eps=eps, max_queries=20, bounds=b),
}

shapes = st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(3, 9), st.integers(3, 9))


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(sorted(ATTACK_FACTORIES)),
    shape=shapes,
    eps=st.floats(0.0, 2.0),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    bounds=st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]),
    seed=st.integers(0, 2**16),
)
def test_x_adv_inside_bounds_and_ball(kind, shape, eps, dtype, bounds, seed) -> None:
    n, c, h, w = shape
    model = tiny_model(c, h, w, seed=seed, dtype=dtype)
    lo, hi = bounds
    x, y = batch(n, c, h, w, seed=seed + 1, dtype=dtype)
    x = lo + (hi - lo) * x
    attack = ATTACK_FACTORIES[kind](eps * (hi - lo), bounds)
    before = snapshot(model)
    result = attack(model, x, y)
    assert_same(before, snapshot(model))
    within(result.x_adv, x, eps * (hi - lo), attack.norm.value, bounds)
    assert result.success.dtype == torch.bool and result.success.shape == (n,)
    assert torch.equal(result.success, result.adv_pred != y)
    assert torch.allclose(result.norms, _dist(result.x_adv, x, attack.norm.value))
    assert bool((result.forwards >= 1).all()) and bool((result.gradients >= 0).all())


def _dist(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    d = (a - b).flatten(1)
    return d.abs().amax(1) if norm == "linf" else torch.linalg.vector_norm(d, dim=1)


@settings(max_examples=50, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    epsilons=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_success_never_decreases_with_eps(norm, epsilons, seed) -> None:
    model = tiny_model(seed=seed)
    x, y = batch(12, seed=seed)
    scale = 1.0 if norm == "linf" else 4.0
    epsilons = [scale * e for e in epsilons]
    results = PGD(eps=epsilons, norm=norm, steps=3, seed=seed)(model, x, y)
    assert len(results) == len(epsilons)
    by_eps = sorted(zip(epsilons, results), key=lambda pair: pair[0])
    for (e_small, small), (e_big, big) in itertools.pairwise(by_eps):
        assert small.eps == e_small and big.eps == e_big
        assert bool((big.success | ~small.success).all())  # broken at a smaller eps stays broken
        assert big.robust_accuracy <= small.robust_accuracy
        within(big.x_adv, x, e_big, norm)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["pgd", "fgsm", "fgm", "fourier", "fourier_greedy", "foolbox:LinfPGD"]),
    seed=st.integers(0, 2**16),
    grads=st.booleans(),
)
def test_model_left_exactly_as_found(kind, seed, grads) -> None:
    model = tiny_model(seed=seed)
    model.train()
    model[1].eval()  # mixed modes must come back per submodule
    model[0].weight.requires_grad_(False)
    if grads:
        model[4].weight.grad = torch.ones_like(model[4].weight)
    x, y = batch(6, seed=seed)
    before = snapshot(model)
    kwargs = {"steps": 2} if kind in ("pgd", "foolbox:LinfPGD") else {}
    if kind.startswith("fourier"):
        kwargs = {"max_queries": 5}
    create_attack(kind, eps=0.2, **kwargs)(model, x, y)
    assert_same(before, snapshot(model))


def test_functions_and_adversary_leave_model_untouched() -> None:
    model = tiny_model().train()
    x, y = batch()
    before = snapshot(model)
    pgd(model, x, y, eps=0.1, steps=2)
    fgsm(model, x, y, eps=0.1)
    fgm(model, x, y, eps=0.5)
    fourier_attack(model, x, y, eps=1.0, max_queries=3)
    fourier_greedy(model, x, y, eps=1.0, max_queries=3)
    Adversary(kind="pgd", eps=0.1, steps=2)(model, x, y)
    assert_same(before, snapshot(model))


# --------------------------------------------------------------------------- counts and semantics


def test_pgd_counts_are_exact_and_clean_errors_are_not_attacked() -> None:
    model = tiny_model()
    x, y = batch(32)
    steps = 4
    r = PGD(eps=0.05, steps=steps)(model, x, y)
    wrong = r.clean_pred != y
    assert 0 < int(wrong.sum()) < 32
    assert torch.equal(r.x_adv[wrong], x[wrong]) and bool(r.success[wrong].all())
    assert bool((r.forwards[wrong] == 1).all()) and bool((r.gradients[wrong] == 0).all())
    assert bool((r.forwards[~wrong] == 1 + steps + 1).all())
    assert bool((r.gradients[~wrong] == steps).all())
    assert r.clean_accuracy == pytest.approx(1 - float(wrong.float().mean()))


def test_restarts_keep_the_first_success_and_only_rerun_unbroken_samples() -> None:
    model = linear_model()
    x, y = batch(64, classes=2)
    settings_ = {"eps": 0.02, "steps": 1, "step_size": 0.005, "seed": 5}
    one = PGD(restarts=1, **settings_)(model, x, y)
    many = PGD(restarts=4, **settings_)(model, x, y)
    assert bool((many.success | ~one.success).all())  # the first restart is the same run
    assert many.success_rate > one.success_rate
    # A sample broken by the first restart keeps exactly that example and ran once.
    first = one.success & (one.clean_pred == y)
    assert torch.equal(many.x_adv[first], one.x_adv[first])
    assert bool((many.forwards[first] == 1 + 1 + 1).all())
    unbroken = ~many.success
    assert bool((many.forwards[unbroken] == 1 + 4 * (1 + 1)).all())


def test_targeted_pgd_reaches_the_target() -> None:
    model = tiny_model(classes=5)
    x, y = batch(32, classes=5)
    target = (y + 1) % 5
    r = PGD(eps=0.5, steps=20)(model, x, y, target=target)
    assert r.success_rate >= 0.9
    assert torch.equal(r.success, r.adv_pred == target)
    assert r.target is not None and r.to_dict()["targeted"]


def test_margin_loss_and_l2_break_more_with_more_budget() -> None:
    model = linear_model()
    x, y = batch(64, classes=2)
    small, big = PGD(eps=(0.05, 2.0), norm="l2", loss="margin", steps=10)(model, x, y)
    assert big.success_rate == 1.0 and small.success_rate < 1.0


def test_step_size_absolute_or_relative() -> None:
    model = tiny_model()
    x, y = batch(16)
    a = PGD(eps=0.1, steps=1, step_size=0.05, random_start=False)(model, x, y)
    b = PGD(eps=0.1, steps=1, rel_step_size=0.5, random_start=False)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv)
    attacked = a.clean_pred == y
    assert float(a.norms[attacked].max()) == pytest.approx(0.05, abs=1e-6)
    with pytest.raises(ValueError, match="step_size"):
        PGD(eps=0.1, step_size=0.1, rel_step_size=0.1)


def test_eps_zero_changes_nothing() -> None:
    model = tiny_model()
    x, y = batch()
    r = PGD(eps=0.0, steps=3)(model, x, y)
    assert torch.equal(r.x_adv, x) and r.robust_accuracy == r.clean_accuracy


def test_result_to_dict_is_plain() -> None:
    r = PGD(eps=0.1, steps=2)(tiny_model(), *batch())
    d = r.to_dict(per_sample=True)
    assert isinstance(r, AttackResult)
    assert d["n"] == 16 and d["gradients"] == int(r.gradients.sum()) and len(d["success"]) == 16
    assert 0 <= d["robust_accuracy"] <= d["clean_accuracy"]


# --------------------------------------------------------------------------- agreement on tensors


def test_fgsm_equals_torchattacks_bit_for_bit() -> None:
    model = tiny_model(c=3, h=8, w=8, classes=4, seed=3)
    x, y = batch(64, c=3, classes=4, seed=4)
    ours = fgsm(model, x, y, eps=0.05)
    theirs = torchattacks.FGSM(model, eps=0.05)(x, y)
    assert torch.equal(ours, theirs)


def test_pgd_without_random_start_equals_torchattacks() -> None:
    model = tiny_model(seed=7)
    x, y = batch(64, seed=8)
    ours = pgd(model, x, y, eps=0.1, steps=5, step_size=0.02, random_start=False)
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=5, random_start=False)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_fgm_matches_foolbox_l2_fast_gradient() -> None:
    model = tiny_model(seed=9)
    x, y = batch(64, seed=10)
    ours = fgm(model, x, y, eps=0.5)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    _, theirs, _ = fb.attacks.L2FastGradientAttack(random_start=False)(fmodel, x, y, epsilons=0.5)
    assert torch.allclose(ours, theirs, atol=1e-6)


# --------------------------------------------------------------------------- EOT and BPDA


class GradientNoise(nn.Module):
    """Identity in value; adds strong random noise to the input gradient (a randomized defense
    whose forward value is deterministic, so robust accuracy is exact)."""

    randomized = True

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(x) * self.scale
        return x + noise * (x - x.detach())


def test_eot_pgd_beats_plain_pgd_on_a_randomized_model() -> None:
    torch.manual_seed(0)  # GradientNoise draws from the global generator
    base = linear_model(seed=11)
    model = nn.Sequential(GradientNoise(scale=5.0), base).eval()
    x = batch(200, seed=12)[0]
    y = base(x).argmax(1)  # every sample starts correct
    plain = PGD(eps=0.05, steps=10, eot_samples=1)(model, x, y)
    eot = PGD(eps=0.05, steps=10)(model, x, y)  # EOT chosen automatically
    exact = PGD(eps=0.05, steps=10)(base, x, y)  # the noise-free gradient, for scale
    print(f"robust accuracy: plain PGD {plain.robust_accuracy:.3f}, EOT-PGD {eot.robust_accuracy:.3f}, "
          f"noise-free {exact.robust_accuracy:.3f}")
    assert eot.robust_accuracy < plain.robust_accuracy - 0.15
    assert bool((eot.gradients == 10 * 10).all())  # 10 EOT samples per step
    assert bool((plain.gradients == 10).all())


def test_bpda_module_passes_the_approximation_gradient() -> None:
    quantize = BPDA(lambda t: torch.round(t * 4) / 4)
    x = torch.rand(3, 1, 4, 4, requires_grad=True)
    out = quantize(x)
    assert torch.equal(out, torch.round(x.detach() * 4) / 4)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(g, torch.ones_like(x))
    xs, ys = batch(64)
    attack = PGD(eps=0.2, steps=10, random_start=False)
    masked = attack(nn.Sequential(_Round(), tiny_model()), xs, ys)  # zero gradients: no progress
    through = attack(nn.Sequential(quantize, tiny_model()), xs, ys)
    assert masked.success_rate == pytest.approx(1 - masked.clean_accuracy)
    assert through.success_rate > masked.success_rate + 0.2


class _Round(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 4) / 4


# --------------------------------------------------------------------------- Fourier-basis attacks


class FailsOnOneFrequency(nn.Module):
    """Two classes: predicts 1 iff the input has energy ``> eps / 2`` along ``U`` on some channel."""

    def __init__(self, u: torch.Tensor, threshold: float) -> None:
        super().__init__()
        self.register_buffer("u", u)
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = (x * self.u).sum(dim=(-2, -1)).abs().amax(1)  # [N]
        return torch.stack([torch.zeros_like(proj), 10 * (proj - self.threshold)], dim=1)


def _orthogonal_images(n: int, c: int, h: int, w: int, u: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = 0.1 * (torch.rand(n, c, h, w, generator=g, dtype=torch.float64) - 0.5)
    noise = noise - (noise * u).sum(dim=(-2, -1), keepdim=True) * u
    return 0.5 + noise


@pytest.mark.parametrize("order", ["row_major", "radius", "random"])
def test_fourier_attack_counts_are_exact(order) -> None:
    h = w = 10
    positions = frequency_order(h, w, order=order, generator=torch.Generator().manual_seed(0))
    k_total = positions.shape[0]
    secret = 37
    u = fourier_basis(h, w, positions[secret:secret + 1], dtype=torch.float64)[0]
    model = FailsOnOneFrequency(u, threshold=0.5)
    x = _orthogonal_images(20, 2, h, w, u, seed=1)
    y = torch.zeros(20, dtype=torch.long)
    # seed 0: the "random" order is the first draw of a generator seeded 0, as above.
    r = FourierAttack(eps=1.0, order=order, batch_size=64, seed=0)(model, x, y)
    assert r.clean_accuracy == 1.0 and r.success_rate == 1.0
    assert r.forwards.tolist() == [1 + secret + 1] * 20  # clean forward + candidates up to the hit
    assert torch.allclose(r.norms, torch.ones(20, dtype=torch.float64))
    delta = r.x_adv - x
    # +-eps / sqrt(C) * U on each of the C = 2 channels
    assert torch.allclose(delta.abs(), u.abs().expand_as(delta) / math.sqrt(2), atol=1e-12)
    assert k_total > secret

    budget = FourierAttack(eps=1.0, order=order, max_queries=secret, seed=0)(model, x, y)
    assert budget.success_rate == 0.0 and budget.forwards.tolist() == [1 + secret] * 20
    assert torch.equal(budget.x_adv, x)


def test_fourier_attack_band_excludes_the_secret_frequency() -> None:
    h = w = 8
    u = fourier_basis(h, w, torch.tensor([[4, 6]]), dtype=torch.float64)[0]  # distance 2
    model = FailsOnOneFrequency(u, threshold=0.5)
    x = _orthogonal_images(6, 1, h, w, u, seed=2)
    y = torch.zeros(6, dtype=torch.long)
    inside = FourierAttack(eps=1.0, radii=(1.5, 2.5))(model, x, y)
    outside = FourierAttack(eps=1.0, radii=(2.5, 10.0))(model, x, y)
    n_inside = frequency_order(h, w, order="row_major", radii=(1.5, 2.5)).shape[0]
    n_outside = frequency_order(h, w, order="row_major", radii=(2.5, 10.0)).shape[0]
    assert inside.success_rate == 1.0 and bool((inside.forwards <= 1 + n_inside).all())
    assert outside.success_rate == 0.0 and outside.forwards.tolist() == [1 + n_outside] * 6


def test_fourier_attack_is_chunking_invariant() -> None:
    model, (x, y) = tiny_model(c=3), batch(10, c=3)
    a = FourierAttack(eps=1.5, batch_size=7, seed=3)(model, x, y)
    b = FourierAttack(eps=1.5, batch_size=1000, seed=3)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.forwards, b.forwards)


def test_fourier_greedy_lowers_true_probability_within_budget() -> None:
    model = tiny_model(c=3, seed=4)
    x, y = batch(40, c=3, seed=5)
    r = FourierGreedy(eps=2.0, step_size=0.5)(model, x, y)
    attacked = r.clean_pred == y
    within(r.x_adv, x, 2.0, "l2")
    with torch.no_grad():
        p0 = model(x).softmax(1).gather(1, y[:, None]).squeeze(1)
        p1 = model(r.x_adv).softmax(1).gather(1, y[:, None]).squeeze(1)
    assert bool((p1[attacked] <= p0[attacked]).all()) and bool((p1[attacked] < p0[attacked]).any())
    assert r.success_rate > 1 - r.clean_accuracy
    # Each candidate is one query: at most two per direction, plus two clean forwards.
    directions = 3 * frequency_order(8, 8).shape[0]
    assert bool((r.forwards[attacked] <= 2 + 2 * directions).all())
    limited = FourierGreedy(eps=2.0, step_size=0.5, max_queries=7)(model, x, y)
    assert int(limited.forwards[attacked].max()) <= 2 + 7


def test_fourier_greedy_breaks_the_one_frequency_model_at_low_frequency() -> None:
    h = w = 8
    u = fourier_basis(h, w, torch.tensor([[4, 5]]), dtype=torch.float64)[0]  # distance 1
    model = FailsOnOneFrequency(u, threshold=0.3)
    x = _orthogonal_images(5, 1, h, w, u, seed=3)
    r = FourierGreedy(eps=1.0, step_size=0.4, order="radius")(model, x, torch.zeros(5, dtype=torch.long))
    assert r.success_rate == 1.0


# --------------------------------------------------------------------------- foolbox adapter


def test_foolbox_adapter_counts_and_matches_foolbox() -> None:
    model = tiny_model(seed=13)
    x, y = batch(32, seed=14)
    r = FoolboxAttack(attack=fb.attacks.LinfPGD(steps=5, random_start=False), eps=0.1)(model, x, y)
    attacked = r.clean_pred == y
    assert bool((r.gradients[attacked] == 5).all())
    assert bool((r.forwards[attacked] >= 1 + 5 + 1).all())
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    _, theirs, _ = fb.attacks.LinfPGD(steps=5, random_start=False)(fmodel, x, y, epsilons=0.1)
    assert torch.allclose(r.x_adv[attacked], theirs[attacked], atol=1e-6)
    within(r.x_adv, x, 0.1, "linf")


def test_foolbox_minimization_attack_gives_one_result_per_eps() -> None:
    model = tiny_model(seed=15)
    x, y = batch(16, seed=16)
    results = create_attack("foolbox:L2CarliniWagnerAttack", eps=(0.3, 3.0), steps=20)(model, x, y)
    assert [r.norm for r in results] == ["l2", "l2"]
    assert results[1].success_rate >= results[0].success_rate
    within(results[0].x_adv, x, 0.3, "l2")


# --------------------------------------------------------------------------- registry, AT, evaluation


def test_registry_builds_every_attack_by_name() -> None:
    assert ATTACKS.names() == ["fgm", "fgsm", "fourier", "fourier_greedy", "pgd"]
    model, (x, y) = tiny_model(), batch(4)
    for name in ATTACKS:
        kwargs = {"max_queries": 2} if name.startswith("fourier") else {}
        r = create_attack(name, eps=0.1, **kwargs)(model, x, y)
        assert r.x_adv.shape == x.shape
    assert isinstance(create_attack("foolbox:LinfPGD", eps=0.1), FoolboxAttack)
    with pytest.raises(ValueError, match="unknown attack"):
        create_attack("nope", eps=0.1)
    with pytest.raises(ValueError, match="foolbox attack"):
        create_attack("foolbox:Nope", eps=0.1)


@pytest.mark.parametrize("kind", ["pgd", "fgsm_rs", "fgsm"])
def test_adversary_for_training(kind) -> None:
    model = tiny_model().train()
    x, y = batch(32)
    adv = adversarial_example_fn(kind, eps=0.1, steps=3, seed=0)
    x_adv = adv(model, x, y)
    within(x_adv, x, 0.1, "linf")
    assert model.training and all(m.training for m in model.modules())
    with torch.no_grad(), model_mode(model):
        loss = nn.functional.cross_entropy
        assert float(loss(model(x_adv), y)) > float(loss(model(x), y))
    again = adversarial_example_fn(kind, eps=0.1, steps=3, seed=0)(model, x, y)
    assert torch.equal(x_adv, again)  # seeded: reproducible
    assert "kind=" in repr(adv)


def test_evaluate_attack_sums_batches(tmp_path) -> None:
    model, (x, y) = tiny_model(), batch(40)
    attack = PGD(eps=(0.05, 0.2), steps=3)
    seen: list[int] = []
    result = evaluate_attack(model, x, y, attack, batch_size=16, callback=seen.append)
    assert seen == [16, 16, 8]
    whole = attack(model, x, y)
    assert result.clean_accuracy == pytest.approx(whole[0].clean_accuracy)
    assert result.robust_accuracy[1] <= result.robust_accuracy[0] <= result.clean_accuracy
    path = result.save(tmp_path / "out" / "r.json")
    import json

    data = json.loads(path.read_text())
    assert data["epsilons"] == [0.05, 0.2] and data["n"] == 40 and len(data["per_eps"]) == 2
    assert not list(path.parent.glob(".*tmp"))


# --------------------------------------------------------------------------- errors


BAD_CALLS = [
    (lambda: PGD(eps=-0.1), "eps"),
    (lambda: PGD(eps=(0.1, -1.0)), "eps"),
    (lambda: PGD(eps=0.1, norm="l3"), "norm"),
    (lambda: PGD(eps=0.1, loss="hinge"), "loss"),
    (lambda: PGD(eps=0.1, bounds=(1, 0)), "bounds"),
    (lambda: FourierAttack(eps=1.0, order="zigzag"), "order"),
    (lambda: FourierAttack(eps=1.0, radii=(3, 1)), "radii"),
    (lambda: Adversary(kind="cw", eps=0.1), "kind"),
    (lambda: pgd(tiny_model(), *batch(), eps=-1.0), "eps"),
    (lambda: pgd(tiny_model(), *batch(), eps=0.1, norm="l1"), "norm"),
    (lambda: fgsm(tiny_model(), *batch(), eps=0.1, loss="nll"), "loss"),
]


@pytest.mark.parametrize("call, name", BAD_CALLS, ids=[b[1] + str(i) for i, b in enumerate(BAD_CALLS)])
def test_bad_settings_raise_value_error_naming_the_argument(call, name) -> None:
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("kind", ["pgd", "fgsm", "fgm", "fourier", "fourier_greedy"])
def test_bad_inputs_raise_value_error_naming_the_argument(kind) -> None:
    attack = create_attack(kind, eps=0.1)
    model = tiny_model()
    x, y = batch(4)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    cases = [
        (nan, y, "x"),
        (x + 1.5, y, "x"),
        (x, y[:3], "y"),
        (x, y[:, None], "y"),
        (x, y.float(), "y"),
        (x, y.int(), "y"),
        (x[0], y, "x"),
    ]
    for xs, ys, name in cases:
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            attack(model, xs, ys)
    with pytest.raises(ValueError, match="target"):
        attack(model, x, y, target=y[:2])


@pytest.mark.parametrize("kind", ["pgd", "fgsm", "fourier", "fourier_greedy"])
def test_attacks_follow_the_input_device_and_dtype(kind, device, dtype) -> None:
    model = tiny_model(c=3, dtype=dtype).to(device)
    x, y = batch(8, c=3, dtype=dtype)
    x, y = x.to(device), y.to(device)
    kwargs = {"max_queries": 10} if kind.startswith("fourier") else {}
    r = create_attack(kind, eps=0.2, **kwargs)(model, x, y)
    assert r.x_adv.device == x.device and r.x_adv.dtype == dtype
    assert r.success.device == x.device and r.forwards.device == x.device
    within(r.x_adv, x, 0.2, r.norm)


def test_early_stop_is_never_weaker_and_leaves_other_trajectories_alone() -> None:
    model = linear_model(seed=21)
    x, y = batch(128, classes=2, seed=22)
    plain = PGD(eps=0.05, steps=10, step_size=0.01)(model, x, y)
    early = PGD(eps=0.05, steps=10, step_size=0.01, early_stop=True)(model, x, y)
    assert bool((early.success | ~plain.success).all())
    assert early.robust_accuracy <= plain.robust_accuracy
    stopped = early.forwards < plain.forwards
    assert int(stopped.sum()) > 10 and bool(early.success[stopped].all())
    assert torch.equal(early.x_adv[~stopped], plain.x_adv[~stopped])
    # A stopped sample was scored by the forward of the step that found it: no extra forward.
    assert torch.equal(early.forwards[stopped] - 1, early.gradients[stopped])
    within(early.x_adv, x, 0.05, "linf")
