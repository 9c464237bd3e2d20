"""Contracts of bandguard.defenses.compose: defend(), the DEFENSES registry and spec strings."""

from __future__ import annotations

import pytest
import torch
from _tiny import images, tiny_net
from torch import nn

from bandguard.defenses import (
    DEFENSES,
    Defended,
    HighPass,
    LowPass,
    PostAverageSettings,
    PostAveraging,
    SmoothSettings,
    build_defense,
    check_defense_spec,
    defend,
    filter_kernels,
    smooth_kernels,
)
from bandguard.fourier import FrequencyFilter, frequency_filter


def test_defend_composes_in_order_and_accepts_numbers_dicts_settings() -> None:
    net, x = tiny_net(), images()
    d = defend(net, lowpass=3, post_average=0.5, smooth=0.25,
               generator=torch.Generator().manual_seed(0))
    assert isinstance(d, Defended) and d.randomized and d.forward_cost == 91 and d.differentiable
    text = repr(d)
    assert text.index("smooth_kernels") < text.index("PostAveraging") < text.index("LowPass")
    inner = d.net.model
    assert isinstance(inner[0], LowPass) and not torch.equal(inner[1][0].weight, net[0].weight)
    same = defend(net, lowpass={"radius": 3}, post_average=PostAverageSettings(radius_l2=0.5),
                  smooth=SmoothSettings(0.25), generator=torch.Generator().manual_seed(0))
    out = d(x)
    assert torch.equal(out, same(x))
    manual = PostAveraging(nn.Sequential(LowPass(3), smooth_kernels(net, 0.25)), radius_l2=0.5,
                           generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, manual(x))
    square = FrequencyFilter(3, shape="square")
    plain = defend(net, lowpass=square)
    assert not plain.randomized and plain.forward_cost == 1
    torch.testing.assert_close(plain(x), net(square(x)))  # a FrequencyFilter is applied as given
    torch.testing.assert_close(defend(net, lowpass={"radius": 3, "shape": "square", "clip": None})(x), net(square(x)))
    with pytest.raises(TypeError, match="lowpass must be a number"):
        defend(net, lowpass="8")
    with pytest.raises(ValueError, match="post_average takes no option 'R'; its options are K, "):
        defend(net, post_average={"R": 1.0})
    with pytest.raises(ValueError, match="LowPass needs a kind='low' filter"):
        defend(net, lowpass=FrequencyFilter(3, kind="high"))


def test_specs_build_every_registered_defense() -> None:
    assert DEFENSES.names() == ["filter_kernels", "highpass", "lowpass", "post_average", "smooth"]
    net, x = tiny_net(), images()
    lp = build_defense("lowpass:3", net)
    torch.testing.assert_close(lp(x), net(LowPass(3)(x)))
    sq = build_defense("lowpass:radius=2,shape=square,clip=none", net)
    torch.testing.assert_close(sq(x), net(frequency_filter(x, 2, shape="square")))
    pa = build_defense("post_average:0.5,K=2,seed=1", net)
    assert pa.forward_cost == 13 and pa.randomized
    assert torch.equal(pa(x), build_defense("post_average:radius_l2=0.5,K=2,seed=1", net)(x))
    sm = build_defense("smooth:0.25,layers=all", net)
    assert not torch.equal(sm.net[2].weight, net[2].weight)
    one = build_defense("smooth:0.25,layers=2", net)  # a single layer name
    normed = build_defense("smooth:1.0,normalise=true", net)
    assert "normalise=True" in repr(normed)
    torch.testing.assert_close(next(normed.parameters()), next(smooth_kernels(net, 1.0, normalise=True).parameters()))
    assert torch.equal(one.net[0].weight, net[0].weight) and not torch.equal(one.net[2].weight, net[2].weight)
    hp = build_defense("highpass:2,clip=none", net)
    torch.testing.assert_close(hp(x), net(frequency_filter(x, 2, kind="high")))
    fk = build_defense("filter_kernels:4", net)
    torch.testing.assert_close(fk.net[0].weight, filter_kernels(net, 4.0)[0].weight)
    with pytest.raises(ValueError, match="unknown defense 'jpeg'"):
        build_defense("jpeg:75", net)
    with pytest.raises(ValueError, match="bad arguments in defense spec 'lowpass'"):
        build_defense("lowpass", net)
    with pytest.raises(ValueError, match="bad arguments in defense spec 'post_average:K=3'"):
        build_defense("post_average:K=3", net)
    with pytest.raises(ValueError, match="unknown shape 'ring'"):
        build_defense("lowpass:3,shape=ring", net)


@pytest.mark.parametrize(("spec", "says"), [
    ("post_average:3,k=15", "defense 'post_average' (spec 'post_average:3,k=15') takes no option 'k' "
                            "(did you mean 'K'?); its options are K, antithetic,"),
    ("lowpass:8,shap=square", "takes no option 'shap' (did you mean 'shape'?); its options are clip, order,"),
    ("smooth:0.25,layerz=all",
     "takes no option 'layerz' (did you mean 'layers'?); its options are layers, normalise, rho"),
    ("filter_kernels:8,zzz=1", "takes no option 'zzz'; its options are layers, radius"),
])
def test_option_typos_name_the_closest_option_and_no_internals(spec: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        check_defense_spec(spec)  # before any model exists
    assert says in str(err.value)
    assert "__init__" not in str(err.value) and "Settings" not in str(err.value)
    with pytest.raises(ValueError, match="did you mean 'K'"):
        defend(torch.nn.Flatten(), post_average={"radius_l2": 3.0, "k": 15})


def _check_compiled(backend: str) -> None:
    net, x = tiny_net(), images(2)
    torch._dynamo.reset()
    lp = nn.Sequential(LowPass(3), net)
    torch.testing.assert_close(torch.compile(lp, backend=backend)(x), lp(x), atol=1e-5, rtol=1e-5)
    hp = nn.Sequential(HighPass(3, profile="gaussian", shape="square"), net)
    torch.testing.assert_close(torch.compile(hp, backend=backend)(x), hp(x), atol=1e-5, rtol=1e-5)
    sm = smooth_kernels(net, 0.3, "all")
    torch.testing.assert_close(torch.compile(sm, backend=backend)(x), sm(x), atol=1e-5, rtol=1e-5)
    settings = {"lowpass": 3, "post_average": {"radius_l2": 0.5, "K": 2}, "smooth": 0.2}
    d1 = defend(net, **settings, generator=torch.Generator().manual_seed(0))
    d2 = defend(net, **settings, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.compile(d2, backend=backend)(x), d1(x), atol=1e-5, rtol=1e-5)
    # A second call draws new directions in both, still in step.
    torch.testing.assert_close(torch.compile(d2, backend=backend)(x), d1(x), atol=1e-5, rtol=1e-5)


def test_compile_matches_eager_aot() -> None:
    # Dynamo tracing plus AOTAutograd: the graph capture inductor would see, without the C++ build.
    _check_compiled("aot_eager")


@pytest.mark.slow
def test_compile_matches_eager_inductor() -> None:
    _check_compiled("inductor")


def test_cli_help_lists_the_registries(capsys: pytest.CaptureFixture[str]) -> None:
    from bandguard.cli import build_parser
    from bandguard.defenses import RegularizerKind
    from bandguard.training import TrainMode

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["attack", "--help"])
    attack_help = " ".join(capsys.readouterr().out.split())
    assert all(name in attack_help for name in DEFENSES.names())
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    train_help = " ".join(capsys.readouterr().out.split())
    assert all(kind.value in train_help for kind in RegularizerKind)
    assert all(mode.value in train_help for mode in TrainMode) and "square" in train_help
    args = parser.parse_args(["train", "--out", "m.pt", "--mode", "highpass", "--radius", "4",
                              "--filter-shape", "square", "--reg", "highfreq:1e-2,radius=4"])
    assert (args.mode, args.filter_shape, args.reg) == ("highpass", "square", ["highfreq:1e-2,radius=4"])
