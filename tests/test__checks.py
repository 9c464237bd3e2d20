"""The shared input checks: what each accepts (numpy and 0-d scalars too) and what it refuses."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
import torch
from torch import nn

from bandguard._checks import (
    check_bool,
    check_bounds,
    check_device,
    check_epsilons,
    check_generator,
    check_images,
    check_int,
    check_labels,
    check_logits,
    check_memory,
    check_model,
    check_model_input,
    check_model_output,
    check_nonnegative,
    check_output_path,
    check_path,
    check_positive,
    check_same_device_dtype,
    check_seed,
    is_scalar_number,
    memory_budget,
)


@pytest.mark.parametrize("value", [0.25, 1, np.float32(0.25), np.float64(0.25), np.int64(1), np.array(0.25),
                                   torch.tensor(0.25), torch.tensor(1), np.array([0.25])])
def test_every_form_of_a_number_is_accepted(value) -> None:
    assert check_nonnegative(value, "eps") == pytest.approx(float(np.asarray(value).item()))
    assert isinstance(check_positive(value, "eps"), float)


def test_sequences_of_epsilons_in_every_form() -> None:
    assert check_epsilons(np.float32(0.5)) == [0.5]
    assert check_epsilons(torch.tensor(0.5)) == [0.5]
    assert check_epsilons(np.array(0.5)) == [0.5]
    assert check_epsilons(np.array([0.5, 0.25])) == [0.5, 0.25]
    assert check_epsilons(torch.tensor([0.5, 0.25])) == [0.5, 0.25]
    assert check_epsilons((np.float64(0.1), 2)) == [0.1, 2.0]
    with pytest.raises(ValueError, match="eps must hold at least one value"):
        check_epsilons([])
    with pytest.raises(ValueError, match=r"eps must be >= 0, got -1.0"):
        check_epsilons([0.1, -1])
    # text is read as on the command line: one parser for "8/255" everywhere
    assert check_epsilons("0.1") == [0.1]
    assert check_epsilons(["4/255", "8/255"]) == [4 / 255, 8 / 255]
    with pytest.raises(ValueError, match="eps must be a number like 0.03, 1e-3 or 8/255, got '8/0'"):
        check_epsilons("8/0")
    with pytest.raises(ValueError, match="eps must be >= 0"):
        check_epsilons("-1/255")


@pytest.mark.parametrize(("value", "error", "says"), [
    (True, TypeError, "r must be a real number, got bool"),
    (np.bool_(True), TypeError, "r must be a real number"),
    ("1", TypeError, "r must be a real number, got str"),
    (None, TypeError, "r must be a real number, got NoneType"),
    (1 + 2j, TypeError, "r must be a real number, got complex"),
    (torch.zeros(2), TypeError, r"r must be a real number, got a tensor of shape \(2,\)"),
    (np.zeros((2, 2)), TypeError, r"r must be a real number, got an array of shape \(2, 2\)"),
    (float("nan"), ValueError, "r must be finite, got nan"),
    (np.float32("inf"), ValueError, "r must be finite, got inf"),
    (10**400, ValueError, "r must be finite, got an integer too large for a float"),
    pytest.param(10**5000, ValueError, r"too large for a float \(16610 bits\)", id="huge-int"),
    (-0.5, ValueError, "r must be >= 0, got -0.5"),
])
def test_bad_numbers_are_refused_with_the_argument_named(value, error, says) -> None:
    with pytest.raises(error, match=says):
        check_nonnegative(value, "r")


def test_integers_are_strict() -> None:
    assert check_int(np.int64(5), "steps") == 5 and type(check_int(np.int64(5), "steps")) is int
    assert check_int(torch.tensor(5), "steps") == 5 and check_int(np.array(5), "steps") == 5
    for bad in (1.5, 2.0, np.float32(2.0), torch.tensor(2.0), True, "3", None):
        with pytest.raises(TypeError, match="steps must be an int, got"):
            check_int(bad, "steps")
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        check_int(0, "steps", minimum=1)
    with pytest.raises(ValueError, match="steps must be <= 9, got 10"):
        check_int(10, "steps", maximum=9)
    assert not is_scalar_number(True) and not is_scalar_number([1]) and is_scalar_number(np.array(2.0))


def test_seeds_bools_generators() -> None:
    assert check_seed(np.uint64(2**64 - 1)) == 2**64 - 1 and check_seed(0) == 0
    for bad, says in ((2**70, r"seed must be an integer in \[0, 2\*\*64 - 1\]"), (-1, "seed must be an integer in")):
        with pytest.raises(ValueError, match=says):
            check_seed(bad)
    with pytest.raises(TypeError, match="seed must be an int, got float 1.5"):
        check_seed(1.5)
    assert check_bool(np.bool_(False), "rescale") is False
    for bad in ("no", "yes", 1, 0, None):
        with pytest.raises(TypeError, match="random_start must be True or False"):
            check_bool(bad, "random_start")
    g = torch.Generator()
    assert check_generator(g) is g and check_generator(None) is None
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got int 0.*manual_seed"):
        check_generator(0)


def test_images_layout_finite_and_bounds() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert check_images(x) is x
    with pytest.raises(ValueError, match=r"x looks channels-last \(2, 28, 28, 1\).*x.permute\(0, 3, 1, 2\)"):
        check_images(torch.rand(2, 28, 28, 1))
    with pytest.raises(ValueError, match="looks channels-last"):
        check_images(torch.rand(2, 32, 32, 3), channels=3)
    check_images(torch.rand(2, 3, 32, 3))  # C=3 in front: channels-first, even if W is 3
    check_images(torch.rand(1, 2, 3, 3))  # tiny genuine images are no channels-last batch
    check_images(torch.rand(4, 5, 9, 1))
    with pytest.raises(ValueError, match=r"shape \[N, C, H, W\], got \(28, 28\)"):
        check_images(torch.rand(28, 28))
    with pytest.raises(ValueError, match=r"x.unsqueeze\(0\)"):
        check_images(torch.rand(1, 28, 28))
    with pytest.raises(TypeError, match=r"x must be a floating tensor, got dtype torch.uint8.*x.float\(\) / 255"):
        check_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="x contains NaN or infinite values"):
        check_images(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match=r"x must hold at least one image"):
        check_images(torch.rand(0, 1, 4, 4))
    with pytest.raises(ValueError, match=r"bounds \[0.0, 1.0\], got values in \[0, 2\]"):
        check_images(torch.tensor([0.0, 2.0]).view(1, 1, 1, 2))


def test_labels_in_range_of_the_model() -> None:
    x = torch.rand(3, 1, 4, 4)
    y = torch.tensor([0, 9, 2])
    assert check_labels(y, x, num_classes=10) is y
    with pytest.raises(ValueError, match=r"target holds class 10 but the model has 10 classes \(0..9\)"):
        check_labels(torch.tensor([0, 10, 2]), x, "target", num_classes=10)
    with pytest.raises(ValueError, match="y must hold non-negative class indices, got -1"):
        check_labels(torch.tensor([0, -1, 2]), x)
    with pytest.raises(ValueError, match=r"y must be an int64 tensor.*y.long\(\)"):
        check_labels(torch.tensor([0, 1, 2], dtype=torch.int32), x)
    with pytest.raises(ValueError, match="y has 2 labels but x has 3 images"):
        check_labels(torch.tensor([0, 1]), x)


def test_logits_not_tuples_vectors_or_probabilities() -> None:
    logits = torch.randn(4, 10)
    assert check_logits(logits, 4) is logits
    check_logits(torch.log_softmax(logits, 1), 4)  # log-probabilities are logits up to a constant
    check_logits(torch.relu(logits) + 0.5, 4)  # non-negative scores that do not sum to one
    cases = [
        ((logits, logits), TypeError, r"got a tuple of 2 items; make the model return the logits alone"),
        ([logits], TypeError, "got a list of 1 items"),
        (logits.numpy(), TypeError, "model output must be a tensor of logits.*got ndarray"),
        (torch.randn(4), ValueError, r"model output must have shape \[N, classes\] \(logits\), got \(4,\)"),
        (torch.randn(4, 10, 1), ValueError, r"got \(4, 10, 1\)"),
        (torch.randn(3, 10), ValueError, r"model output has 3 rows for 4 images"),
        (torch.randn(4, 1), ValueError, "at least 2 classes"),
        (torch.zeros(4, 10, dtype=torch.long), TypeError, "floating-point logits, got dtype torch.int64"),
        (torch.full((4, 10), float("nan")), ValueError, "model output contains NaN"),
        (torch.softmax(logits, 1), ValueError, "looks like probabilities.*remove the final softmax"),
        (torch.softmax(logits, 1).double(), ValueError, "looks like probabilities"),
        (torch.softmax(logits, 1).bfloat16(), ValueError, "looks like probabilities"),
        (torch.softmax(logits.half(), 1), ValueError, "looks like probabilities"),
    ]
    for out, error, says in cases:
        with pytest.raises(error, match=says):
            check_logits(out, 4)


def test_model_device_and_dtype_must_match_the_images() -> None:
    model = nn.Linear(4, 2)
    x = torch.rand(3, 4)
    assert check_same_device_dtype(model, x) is x
    assert check_same_device_dtype(nn.Flatten(), x.double()) is not None  # no parameters: anything goes
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 but the model's parameters are torch.float32.*"
                                        r"x = x.to\(torch.float32\)"):
        check_same_device_dtype(model, x.double())
    with pytest.raises(ValueError, match="x is on meta but the model is on cpu"):
        check_same_device_dtype(model, x.to("meta"))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        check_model(lambda t: t)


def test_devices_that_do_not_exist_here_are_refused() -> None:
    assert check_device("cpu") == torch.device("cpu") and check_device(torch.device("cpu")).type == "cpu"
    for bad in ("gpu", "cuda:x", "", "CPU0"):
        with pytest.raises(ValueError, match="unknown device"):
            check_device(bad)
    with pytest.raises(TypeError, match="device must be a str or torch.device, got int"):
        check_device(0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' asks for a GPU but CUDA is not available"):
            check_device("cuda")
    else:
        with pytest.raises(ValueError, match="no such GPU"):
            check_device(f"cuda:{torch.cuda.device_count()}")


def test_paths_and_outputs(tmp_path) -> None:
    assert check_path(tmp_path / "a") == tmp_path / "a"
    assert check_path(pathlib.PurePosixPath("x/y")) == pathlib.Path("x/y")
    with pytest.raises(TypeError, match="path must be a path"):
        check_path(b"x")
    with pytest.raises(ValueError, match="path must be a non-empty path"):
        check_path("  ")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("")
    assert check_output_path(tmp_path / "new" / "deeper" / "r.json", "out") == tmp_path / "new" / "deeper" / "r.json"
    with pytest.raises(ValueError, match="out .* is a folder"):
        check_output_path(tmp_path / "dir", "out")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_output_path(tmp_path / "file" / "r.json", "out")
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        check_output_path(tmp_path / "file", "out", directory=True)
    assert check_output_path(tmp_path / "dir", "out", directory=True) == tmp_path / "dir"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_place_is_refused(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="no write permission"):
            check_output_path(locked / "r.json", "out")
    finally:
        locked.chmod(0o700)


def test_memory_is_estimated_before_allocation() -> None:
    assert check_memory(1000, "K", budget=1000) == 1000
    # Post-averaging with K=100000000 on one CIFAR image: 1e8 * 3 * 32 * 32 * 4 bytes = 1.2 TB.
    with pytest.raises(ValueError, match=r"K too large: it needs about 1.23 TB .* lower K"):
        check_memory(100_000_000 * 3 * 32 * 32 * 4, "K", budget=8 * 10**9)
    assert memory_budget("cpu") > 2**28
    with pytest.raises(ValueError, match="max_batch too large"):
        check_memory(memory_budget("cpu") + 1, "max_batch", device="cpu")


def test_bounds() -> None:
    assert check_bounds((np.float32(0), torch.tensor(1.0))) == (0.0, 1.0)
    for bad in ("ab", (0, 1, 2), 5, None):
        with pytest.raises(ValueError, match="bounds must be a pair"):
            check_bounds(bad)
    with pytest.raises(ValueError, match="bounds must have lo < hi"):
        check_bounds((1, 0))
    with pytest.raises(ValueError, match="bounds must be finite"):
        check_bounds((0, float("inf")))


def test_the_two_call_site_helpers_combine_the_checks() -> None:
    model, x, y = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
    assert check_model_input(model, x) is x
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        check_model_input(lambda t: t, x)
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        check_model_input(model, x.double())
    with pytest.raises(ValueError, match="x looks channels-last"):
        check_model_input(model, torch.rand(2, 8, 8, 1))
    logits = model(x)
    assert check_model_output(logits, y) is logits
    with pytest.raises(ValueError, match=r"y holds class 3 but the model has 3 classes"):
        check_model_output(logits, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"target holds class 5"):
        check_model_output(logits, y, target=torch.tensor([5, 0]))
    with pytest.raises(ValueError, match="looks like probabilities"):
        check_model_output(logits.softmax(1), y)
    with pytest.raises(TypeError, match="got a tuple"):
        check_model_output((logits, x), n=2)


# --------------------------------------------------------------------------- second round (issue 22)


def test_reals_stay_within_float32s_range() -> None:
    from bandguard._checks import MAX_REAL

    assert check_nonnegative(MAX_REAL, "r") == MAX_REAL and check_nonnegative(np.float64(3e38), "r") == 3e38
    for big in (1e39, 1e308, -1e300, np.float64(1e300), 10**300):
        with pytest.raises(ValueError, match=r"r must be at most 3.403e\+38 in magnitude \(float32's range"):
            check_nonnegative(big, "r") if big > 0 else check_bounds((big, 0), "r")


def test_names_one_rule() -> None:
    from bandguard._checks import check_names

    assert check_names("contrast", "names") == ("contrast",)
    assert check_names(["fog", "contrast"], "names") == ("fog", "contrast")
    assert check_names(iter(("fog",)), "names") == ("fog",) and check_names((), "names", allow_empty=True) == ()
    with pytest.raises(ValueError, match=r"names must name at least one, got \[\]"):
        check_names([], "names")
    for bad, says in [(3, "got int 3"), (b"fog", "got bytes"), ({"fog": 1}, "got dict"), ([1], "non-empty strings"),
                      ([""], "non-empty strings"), (None, "got NoneType")]:
        with pytest.raises(TypeError, match=says):
            check_names(bad, "names")


def test_callables_and_per_sample_values() -> None:
    from bandguard._checks import check_callable, check_per_sample

    assert check_callable(print, "progress", "f(desc, n)") is print
    with pytest.raises(TypeError, match=r"progress must be a callable f\(desc, n\), got bool True"):
        check_callable(True, "progress", "f(desc, n)")
    assert check_per_sample(torch.zeros(3), 3, "metric").shape == (3,)
    for bad, says in [(torch.zeros(()), r"got shape \(\)"), (torch.zeros(3, 2), r"got shape \(3, 2\)"),
                      (0.5, "got float"), (torch.zeros(2), r"shape \[3\], got shape \(2,\)")]:
        with pytest.raises(ValueError, match=f"metric must return one value per sample.*{says}"):
            check_per_sample(bad, 3, "metric")


def test_image_dtypes_and_the_cheap_logits_check() -> None:
    from bandguard._checks import FFT_DTYPES, check_logits_shape

    x = torch.rand(2, 1, 4, 4)
    assert check_images(x.double(), dtypes=FFT_DTYPES) is not None
    with pytest.raises(TypeError, match=r"x has dtype torch.float16; expected one of torch.float32, torch.float64"):
        check_images(x.half(), dtypes=FFT_DTYPES)
    probs = torch.softmax(torch.randn(2, 3), 1)
    assert check_logits_shape(probs, 2) is probs  # the cheap half reads no values
    with pytest.raises(ValueError, match="looks like probabilities"):
        check_logits(probs, 2)
    with pytest.raises(ValueError, match="it returned images: a defense must wrap the classifier"):
        check_logits_shape(x, 2, name="inner output")
    with pytest.raises(TypeError, match="inner output must be a tensor of logits"):
        check_logits_shape((x, x), 2, name="inner output")
