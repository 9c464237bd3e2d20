"""Contracts every attack keeps (bandguard/attacks/protocol.py): bounds and eps-ball, no graph,
the model untouched down to every submodule's mode, exact per-sample counts against a counting
model, one result type, function equals settings twin, errors, device and dtype."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from attack_models import Counting, assert_same, batch, linear_model, snapshot, tiny_model, within
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bandguard.attacks import (
    ATTACKS,
    FGM,
    FGSM,
    PGD,
    Attack,
    AttackResults,
    FoolboxAttack,
    FourierAttack,
    FourierGreedy,
    Outcome,
    create_attack,
    fgm,
    fgsm,
    fourier_attack,
    fourier_greedy,
    pgd,
)

pytestmark = pytest.mark.usefixtures("one_thread")


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
    results = attack(model, x, y)
    assert_same(before, snapshot(model))
    assert isinstance(results, AttackResults) and len(results) == 1
    r = results[0]
    # The attack reports its threat model; the ball is checked in the norm it names (per channel
    # for the Fourier tools), not by a list of attack classes.
    threat = results.threat
    assert threat is not None and threat.shape == (c, h, w) and threat.epsilons == attack.epsilons
    per_channel = threat.norm.value == "l2/channel"
    assert per_channel == isinstance(attack, (FourierAttack, FourierGreedy))
    within(r.x_adv, x, eps * (hi - lo), attack.norm.value, bounds, per_channel=per_channel)
    assert r.success.dtype == torch.bool and r.success.shape == (n,)
    assert torch.equal(r.success, r.adv_pred != y)
    delta = r.x_adv - x
    if attack.norm.value == "l2":
        torch.testing.assert_close(r.norms, torch.linalg.vector_norm(delta.flatten(1), dim=1))
        torch.testing.assert_close(r.channel_norms, torch.linalg.vector_norm(delta.flatten(2), dim=2))
    else:
        torch.testing.assert_close(r.norms, delta.flatten(1).abs().amax(1))
        torch.testing.assert_close(r.channel_norms, delta.flatten(2).abs().amax(2))
    # The model's answer on x_adv is the reported one (no stale prediction).
    with torch.no_grad():
        assert torch.equal(model(r.x_adv).argmax(1), r.adv_pred)
    # A sample the model got wrong is left alone at one forward.
    wrong = r.clean_pred != y
    assert torch.equal(r.x_adv[wrong], x[wrong]) and bool((r.forwards[wrong] == 1).all())


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
    settings_ = {"steps": 2} if kind in ("pgd", "foolbox:LinfPGD") else {}
    if kind.startswith("fourier"):
        settings_ = {"max_queries": 5}
    create_attack(kind, eps=0.2, **settings_)(model, x, y)
    assert_same(before, snapshot(model))


# --------------------------------------------------------------------------- one result type


TWINS = [
    (lambda m, x, y: pgd(m, x, y, eps=0.1, steps=3), PGD(eps=0.1, steps=3)),
    (lambda m, x, y: fgsm(m, x, y, eps=0.1, random_start=True), FGSM(eps=0.1, random_start=True)),
    (lambda m, x, y: fgm(m, x, y, eps=0.5), FGM(eps=0.5)),
    (lambda m, x, y: fourier_attack(m, x, y, eps=1.0, max_queries=9), FourierAttack(eps=1.0, max_queries=9)),
    (lambda m, x, y: fourier_greedy(m, x, y, eps=1.0, max_queries=9), FourierGreedy(eps=1.0, max_queries=9)),
]


@pytest.mark.parametrize("function, attack", TWINS, ids=[type(t[1]).__name__ for t in TWINS])
def test_function_equals_its_settings_twin(function, attack, device, dtype) -> None:
    model = tiny_model(c=3, dtype=dtype).to(device)
    x, y = batch(8, c=3, dtype=dtype)
    x, y = x.to(device), y.to(device)
    a, b = function(model, x, y), attack(model, x, y)
    assert type(a) is AttackResults and type(b) is AttackResults
    assert a.epsilons == b.epsilons == attack.epsilons
    for field in ("x_adv", "success", "norms", "channel_norms", "adv_pred", "forwards", "gradients"):
        assert torch.equal(getattr(a[0], field), getattr(b[0], field)), field
    r = b[0]
    assert r.x_adv.device == x.device and r.x_adv.dtype == dtype
    assert r.success.device == x.device and r.forwards.device == x.device


@pytest.mark.parametrize("eps", [0.1, (0.1,), [0.1], torch.tensor(0.1)], ids=["float", "tuple", "list", "tensor"])
def test_one_return_type_whatever_eps_is(eps) -> None:
    model, (x, y) = tiny_model(), batch(8)
    results = PGD(eps=eps, steps=2)(model, x, y)
    assert type(results) is AttackResults and results.epsilons == (pytest.approx(0.1),)
    assert PGD(eps=eps, steps=2).eps == (pytest.approx(0.1),)


# --------------------------------------------------------------------------- exact counts


def _counted(attack: Attack, n: int = 10, c: int = 3, seed: int = 3):
    """Run ``attack`` on a counting wrapper; returns (result, rows seen, gradient rows seen)."""
    base = tiny_model(c=c, classes=3, seed=seed, dtype=torch.float64)
    x, _ = batch(n, c=c, seed=seed + 1, dtype=torch.float64)
    with torch.no_grad():
        y = base(x).argmax(1)
    y[: n // 4] = (y[: n // 4] + 1) % 3  # a few clean errors: one forward each, never attacked
    model = Counting(base, x)
    r = attack(model, x, y)[0]
    return r, model.rows, model.grad_rows


COUNTED = {
    "pgd": PGD(eps=0.1, steps=4),
    "pgd_restarts_l2": PGD(eps=0.3, norm="l2", steps=3, restarts=3),
    "pgd_early_stop": PGD(eps=0.2, steps=6, early_stop=True),
    "pgd_eot": PGD(eps=0.1, steps=2, eot_samples=3),
    "fgsm": FGSM(eps=0.1),
    "fgsm_rs": FGSM(eps=0.1, random_start=True),
    "fgm": FGM(eps=0.5),
    "fourier_one_per_forward": FourierAttack(eps=0.8, max_queries=30, batch_size=1),
    "fourier_greedy": FourierGreedy(eps=0.8, max_queries=30),
}


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_counts_equal_what_a_counting_model_sees(name) -> None:
    r, rows, grad_rows = _counted(COUNTED[name])
    assert r.forwards.tolist() == rows.tolist()
    assert r.gradients.tolist() == grad_rows.tolist()
    wrong = r.clean_pred != r.labels
    assert bool((r.forwards[wrong] == 1).all()) and bool(wrong.any())


def test_fourier_greedy_spends_one_clean_forward_per_image() -> None:
    """SimBA counts one clean forward; so does bandguard, and that is all it spends."""
    attack = FourierGreedy(eps=0.8, max_queries=4)
    r, rows, _ = _counted(attack)
    attacked = r.clean_pred == r.labels
    assert rows.tolist() == r.forwards.tolist()
    # every attacked image: 1 clean forward + its candidates (at most max_queries)
    assert bool((r.forwards[attacked] <= 1 + 4).all()) and bool((r.forwards[attacked] >= 2).all())
    unbroken = attacked & ~r.success
    assert bool((r.forwards[unbroken] == 1 + 4).all()) and bool(unbroken.any())


def test_fourier_attack_chunks_never_count_more_than_they_spend() -> None:
    r, rows, _ = _counted(FourierAttack(eps=0.8, max_queries=30, batch_size=64))
    assert bool((r.forwards <= rows).all())  # candidates after a success in a chunk are not queries
    exact, exact_rows, _ = _counted(FourierAttack(eps=0.8, max_queries=30, batch_size=1))
    assert torch.equal(exact.forwards, exact_rows)
    assert torch.equal(exact.forwards, r.forwards) and torch.equal(exact.x_adv, r.x_adv)


def test_foolbox_counts_equal_what_a_counting_model_sees() -> None:
    import foolbox as fb

    r, rows, grad_rows = _counted(FoolboxAttack(attack=fb.attacks.LinfPGD(steps=3), eps=0.1))
    assert r.forwards.tolist() == rows.tolist()
    assert r.gradients.tolist() == grad_rows.tolist()


# --------------------------------------------------------------------------- the _run hook


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShiftAll(Attack):
    """A plug-in attack through the ``_run`` hook alone: moves every pixel by +eps (clipped)."""

    name = "shift"
    norm = "linf"

    def _run(self, model, x, labels, targeted, eps, generator) -> Outcome:
        x_adv = (x + eps).clamp(*self.bounds)
        with torch.no_grad():
            pred = model(x_adv).argmax(1)
        ones = torch.ones_like(labels)
        return Outcome(x_adv, pred != labels, pred, ones, 0 * ones)


def test_a_plug_in_attack_gets_the_whole_protocol() -> None:
    model, (x, y) = linear_model(), batch(32, classes=2)
    results = ShiftAll(eps=(0.3, 0.0, 0.1))(model, x, y)
    assert results.epsilons == (0.3, 0.0, 0.1)
    right = results[0].clean_pred == y
    at_01 = results.at(0.1)
    assert torch.equal(at_01.x_adv[right], (x[right] + 0.1).clamp(0, 1))
    assert torch.equal(results.at(0.0).x_adv, x)
    assert bool((at_01.forwards[right] == 2).all())
    # eps 0.3 runs only on samples eps 0.1 did not break; broken ones keep their 0.1 example
    broken = at_01.success & right
    assert torch.equal(results.at(0.3).x_adv[broken], at_01.x_adv[broken])
    assert results.robust.shape == (3, 32)


def test_craft_attacks_every_sample_and_trusts_the_mode() -> None:
    model, (x, y) = tiny_model(), batch(16)
    model.train()
    before = snapshot(model)
    x_adv = PGD(eps=0.1, steps=3).craft(model, x, y, generator=torch.Generator().manual_seed(0))
    assert_same(before, snapshot(model) | {"params": before["params"]})  # BN statistics may move
    within(x_adv, x, 0.1, "linf")
    assert bool(((x_adv - x).flatten(1).abs().amax(1) > 0).all())  # misclassified samples too
    with pytest.raises(ValueError, match="one eps"):
        PGD(eps=(0.1, 0.2)).craft(model, x, y)


# --------------------------------------------------------------------------- errors


BAD_SETTINGS = [
    (lambda: PGD(eps=-0.1), ValueError, "eps"),
    (lambda: PGD(eps=(0.1, -1.0)), ValueError, "eps"),
    (lambda: PGD(eps=()), ValueError, "eps"),
    (lambda: PGD(eps=0.1, norm="l3"), ValueError, "norm"),
    (lambda: PGD(eps=0.1, loss="hinge"), ValueError, "loss"),
    (lambda: PGD(eps=0.1, bounds=(1, 0)), ValueError, "bounds"),
    (lambda: PGD(eps=0.1, steps=-1), ValueError, "steps"),
    (lambda: PGD(eps=0.1, seed=1.5), TypeError, "seed"),
    (lambda: FGSM(eps=0.1, step_size=0.0), ValueError, "step_size"),
    (lambda: FourierAttack(eps=1.0, order="zigzag"), ValueError, "order"),
    (lambda: FourierAttack(eps=1.0, radii=(3, 1)), ValueError, "radii"),
    (lambda: FourierGreedy(eps=1.0, max_queries=0), ValueError, "max_queries"),
    (lambda: pgd(tiny_model(), *batch(), eps=-1.0), ValueError, "eps"),
    (lambda: pgd(tiny_model(), *batch(), eps=0.1, norm="l1"), ValueError, "norm"),
    (lambda: fgsm(tiny_model(), *batch(), eps=0.1, loss="nll"), ValueError, "loss"),
    (lambda: create_attack("pgd", eps=0.1, colour="red"), ValueError, "colour"),
]


@pytest.mark.parametrize("call, error, name", BAD_SETTINGS, ids=[f"{b[2]}{i}" for i, b in enumerate(BAD_SETTINGS)])
def test_bad_settings_raise_naming_the_argument(call, error, name) -> None:
    with pytest.raises(error, match=name):
        call()


@pytest.mark.parametrize("kind", ["pgd", "fgsm", "fgm", "fourier", "fourier_greedy"])
def test_bad_inputs_raise_naming_the_argument(kind) -> None:
    attack = create_attack(kind, eps=0.1)
    model = tiny_model()
    x, y = batch(4)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    cases = [
        (nan, y, ValueError, "x"),
        (x + 1.5, y, ValueError, "x"),
        (x, y[:3], ValueError, "y"),
        (x, y[:, None], ValueError, "y"),
        (x, y.float(), (ValueError, TypeError), "y"),
        (x[0], y, ValueError, "x"),
    ]
    for xs, ys, error, name in cases:
        with pytest.raises(error, match=rf"\b{name}\b"):
            attack(model, xs, ys)
    with pytest.raises(ValueError, match="target"):
        attack(model, x, y, target=y[:2])
    with pytest.raises(TypeError, match="model"):
        attack(lambda t: t, x, y)
    with pytest.raises(TypeError, match="generator"):
        attack(model, x, y, generator=0)


def test_registry_builds_every_attack_by_name() -> None:
    assert ATTACKS.names() == ["apgd", "fgm", "fgsm", "fourier", "fourier_greedy", "pgd", "square", "standard"]
    model, (x, y) = tiny_model(classes=5), batch(4)  # APGD-T's DLR needs at least 4 classes
    small = {"fourier": {"max_queries": 2}, "fourier_greedy": {"max_queries": 2}, "apgd": {"steps": 2},
             "square": {"queries": 3}, "standard": {"steps": 2, "fourier_queries": 2, "square_queries": 3}}
    for name in ATTACKS:
        attack = create_attack(name, eps=0.1, **small.get(name, {}))
        if name == "standard":  # a factory: the ensemble of APGD-CE, APGD-T, Fourier and Square
            assert [a.name for a in attack.attacks] == ["apgd", "apgd", "fourier_in_ball", "square"]
        else:
            assert type(attack) is ATTACKS.get(name) and attack.name == name
        assert attack(model, x, y)[0].x_adv.shape == x.shape
    with pytest.raises(ValueError, match="unknown attack"):
        create_attack("nope", eps=0.1)
    with pytest.raises(ValueError, match="takes no option 'nope'"):
        create_attack("standard", eps=0.1, nope=1)


def test_explicit_generator_overrides_the_seed() -> None:
    model, (x, y) = tiny_model(), batch(16)
    attack = PGD(eps=0.2, steps=1, seed=0)
    a = attack(model, x, y)[0].x_adv
    b = attack(model, x, y, generator=torch.Generator().manual_seed(0))[0].x_adv
    c = attack(model, x, y, generator=torch.Generator().manual_seed(1))[0].x_adv
    assert torch.equal(a, b) and not torch.equal(a, c)


class _Plain(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3]


def test_targeted_success_means_the_target() -> None:
    model, (x, _) = _Plain(), batch(12, h=2, w=2)
    y = model(x).argmax(1)
    target = (y + 1) % 3
    r = FGSM(eps=1.0)(model, x, y, target=target)[0]
    assert torch.equal(r.success, r.adv_pred == target) and torch.equal(r.robust, ~r.success)
    assert r.success_rate == 1.0 and r.target is not None and r.to_dict()["targeted"]


def test_alive_attacks_only_the_samples_alive_at_each_eps() -> None:
    """``alive`` [E, N]: a sample dead everywhere is not forwarded; one alive at the larger eps only is
    attacked there alone; the alive ones get what a call on them alone gives."""
    model, (x, y) = tiny_model(), batch(12)
    attack = PGD(eps=(0.05, 0.3), steps=3, random_start=False)
    alive = torch.ones(2, 12, dtype=torch.bool)
    alive[:, :3] = False  # dead everywhere
    alive[0, 3:6] = False  # alive at 0.3 only
    r = attack(model, x, y, alive=alive)
    assert (r[0].forwards[:3] == 0).all() and (r[1].forwards[:3] == 0).all() and (r[1].adv_pred[:3] == -1).all()
    assert torch.equal(r[1].x_adv[:3], x[:3]) and not bool(r.success[:, :3].any())
    assert torch.equal(r[0].x_adv[3:6], x[3:6]) and (r[0].gradients[3:6] == 0).all()
    alone = attack(model, x[3:], y[3:])
    assert torch.equal(r[1].success[6:], alone[1].success[3:]) and torch.equal(r[0].success[6:], alone[0].success[3:])
    big = PGD(eps=(0.3,), steps=3, random_start=False)(model, x[3:6], y[3:6])[0]
    assert torch.equal(r[1].x_adv[3:6], big.x_adv) and torch.equal(r[1].forwards[3:6], big.forwards)


@pytest.mark.parametrize(("alive", "err", "match"), [
    (torch.ones(1, 4, dtype=torch.bool), ValueError, r"alive must have shape \[E, N\] = \[2, 4\]"),
    (torch.ones(2, 4), TypeError, "alive must be a bool tensor"),
    ([[True] * 4] * 2, TypeError, "alive must be a bool tensor"),
])
def test_bad_alive_raises(alive, err, match) -> None:
    model, (x, y) = tiny_model(), batch(4)
    with pytest.raises(err, match=match):
        PGD(eps=(0.1, 0.2), steps=1)(model, x, y, alive=alive)


def test_resolve_eot_follows_what_the_model_declares() -> None:
    from bandguard.attacks import resolve_eot
    from bandguard.defenses import build_defense

    model = tiny_model()
    noisy = build_defense("post_average:0.3,K=1,seed=0", model)
    assert resolve_eot(model, None) == 1 and resolve_eot(noisy, None) == 10 and resolve_eot(noisy, None, 3) == 3
    assert resolve_eot(noisy, 1) == 1 and resolve_eot(model, 4) == 4
