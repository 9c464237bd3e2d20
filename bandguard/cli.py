"""The ``bandguard`` command line: argument parsing and printing only.

Each subcommand is a pair of functions, ``_<name>_parser`` (declares arguments) and
``_<name>_run`` (calls the library and prints), listed in ``COMMANDS`` at the bottom.

Errors: every failure is one line on stderr, ``bandguard <command>: error: ...``, naming the
argument; exit code 2 for a usage error (a bad argument, a missing or bad input file), 1 for a
runtime error (out of memory, a failing device, a write that fails late). Impossible values and
unwritable outputs are refused while parsing, before any work. ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from bandguard._checks import check_output_path
from bandguard._checks import parse_number as _parse_number
from bandguard._io import write_json_atomic
from bandguard._progress import Bars, announce_estimate
from bandguard._version import __version__


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and exit with code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every default that says something (not ``None``, ``False`` or ``[]``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)".strip()


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give arguments without help text one, so the formatter shows their default too."""
    for action in parser._actions:
        if action.help is None and action.default not in (None, False, [], argparse.SUPPRESS):
            action.help = "(default: %(default)s)"


def parse_number(text: str) -> float:
    """``"0.03"``, ``"8/255"`` or ``"1e-3"`` as a float (argparse type; the reader of
    :func:`bandguard._checks.parse_number`, shared with TOML specs and the Python API)."""
    try:
        return _parse_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number like 0.03 or 8/255, got {text!r}") from None


def parse_numbers(text: str) -> list[float]:
    """Comma-separated numbers, e.g. ``"0.1,0.2,8/255"`` (argparse type)."""
    return [parse_number(part) for part in text.split(",") if part.strip()]


def _bounded(convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = expected  # argparse names the type in some messages
    return parse


#: argparse types refusing impossible values at parse time (``--lr 0``, ``--eps -1``, ``-n 0``).
positive_int = _bounded(int, lambda v: v >= 1, "an integer >= 1")
nonnegative_int = _bounded(int, lambda v: v >= 0, "an integer >= 0")
positive_number = _bounded(parse_number, lambda v: math.isfinite(v) and v > 0, "a number > 0")
nonnegative_number = _bounded(parse_number, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
seed_int = _bounded(int, lambda v: 0 <= v < 2**64, "a seed, an integer in [0, 2**64 - 1]")


def nonnegative_numbers(text: str) -> list[float]:
    """Comma-separated numbers, each finite and >= 0 (budgets: ``"0.1,8/255"``)."""
    values = [nonnegative_number(part) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected one or more numbers >= 0 like 0.1,8/255, got {text!r}")
    return values


def _argtype(check: Callable[[str], Path]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            check(text)
        except (ValueError, TypeError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text  # a str, as argparse gives every other path

    return parse


#: an output file that can be written (not a folder, in a writable place); checked before work.
output_file = _argtype(lambda text: check_output_path(text, "path"))
#: an output folder (existing or new, not a file) in a writable place.
output_dir = _argtype(lambda text: check_output_path(text, "folder", directory=True))


def memory_size(text: str) -> str:
    """A byte budget such as ``4GiB``, ``512MiB`` or ``2GB`` (argparse type; checked, kept as text)."""
    from bandguard._memory import parse_memory

    try:
        parse_memory(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 4GiB, 512MiB or 2GB, got {text!r}") from None
    return text


def png_file(text: str) -> str:
    """A PNG figure path whose data goes beside it as ``.json``: so it must end in ``.png``
    (``--out hm.json`` would have the data overwrite the figure)."""
    path = output_file(text)
    if Path(path).suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(
            f"expected a .png file (the figure; its data goes beside it as .json), got {text!r}"
        )
    return path


def _device(name: str | None) -> torch.device:
    from bandguard.bench.loading import resolve_device

    return resolve_device(name, "--device")


# --------------------------------------------------------------------------- train


def _train_parser(p: argparse.ArgumentParser) -> None:
    from bandguard.bench.zoo import RECIPES
    from bandguard.defenses import RegularizerKind
    from bandguard.fourier import MaskShape
    from bandguard.models import MODELS
    from bandguard.training import AMP_CHOICES, Schedule, TrainMode

    p.add_argument("--recipe", default=None, choices=list(RECIPES),
                   help="train a reference recipe as published (e.g. cifar_fast: airbench's class, >= 93 %% "
                        "on CIFAR-10); the other training options are then not used, but --seed (another training "
                        "seed: its own cache entry). Uses published weights ($BANDGUARD_WEIGHTS) or the cache "
                        "unless --retrain; resumes per epoch")
    p.add_argument("--retrain", action="store_true", help="with --recipe: train even if weights exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dataset", default="mnist", help="mnist, cifar10 or an ImageFolder path")
    p.add_argument("--arch", default="mnist_cnn", choices=MODELS.names())
    p.add_argument("--epochs", type=positive_int, default=2)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_number, default=None, help="peak learning rate (default 0.05 MNIST, 0.1 else)")
    p.add_argument("--weight-decay", type=nonnegative_number, default=5e-4)
    p.add_argument("--schedule", default="onecycle", choices=[s.value for s in Schedule])
    p.add_argument("--mode", default="natural", choices=[m.value for m in TrainMode])
    p.add_argument("--sigma", type=nonnegative_number, default=0.0, help="noise level for --mode gaussian")
    p.add_argument("--radius", type=nonnegative_number, default=None,
                   help="cut-off for --mode lowpass/highpass, in frequency-index units")
    p.add_argument("--filter-shape", default="disc", choices=[m.value for m in MaskShape],
                   help="filter of --mode lowpass/highpass: disc (Wang et al.) or square (Yin et al.)")
    p.add_argument("--filter-rescale", action="store_true",
                   help="divide each filtered image by its maximum (Wang et al.'s x / max(x))")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop + flip (default on for CIFAR-10)")
    p.add_argument("--limit", type=positive_int, default=None, help="train on N images only (a fixed random subset)")
    p.add_argument("--amp", default="auto", choices=AMP_CHOICES)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=output_file, required=True, help="checkpoint path (written every epoch)")
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.add_argument("--reg", action="append", default=[], metavar="SPEC",
                   help="weight regularizer, repeatable: NAME:WEIGHT[,key=value...] with NAME one of "
                        f"{', '.join(k.value for k in RegularizerKind)}, e.g. neighbor:1e-3 or "
                        "highfreq:1e-2,radius=8,layers=first (layers: all, first or names joined by +)")
    from bandguard.attacks import ATTACK_PRESETS, NORMS
    from bandguard.training import AdversaryMode

    adv = p.add_argument_group("adversarial training")
    adv.add_argument("--adv", default=None, choices=["pgd", "fgsm"],
                     help="pgd: PGD-AT (Madry et al.); fgsm: fast FGSM with random start (Wong et al.)")
    adv.add_argument("--adv-preset", default=None, choices=sorted(ATTACK_PRESETS),
                     help="published settings instead of --adv/--eps: madry_mnist (PGD 40 x 0.01, eps 0.3), "
                          "madry_cifar10 (PGD 7 x 2/255, eps 8/255), wong_fast_mnist, wong_fast_cifar10")
    adv.add_argument("--adv-mode", default=AdversaryMode.TRAIN.value, choices=[m.value for m in AdversaryMode],
                     help="model mode while crafting: train (BatchNorm batch statistics, as Madry et al. "
                          "and Wong et al.) or eval")
    adv.add_argument("--eps", type=nonnegative_number, default=None, help="budget for --adv, e.g. 0.3 or 8/255")
    adv.add_argument("--steps", type=positive_int, default=10, help="PGD steps for --adv pgd")
    adv.add_argument("--step-size", type=positive_number, default=None,
                     help="step (default 2.5*eps/steps for pgd, which is not Madry et al.'s: see "
                          "--adv-preset; 1.25*eps for fgsm)")
    adv.add_argument("--norm", default="linf", choices=NORMS, help="threat model for --adv pgd")


def _train_adversary(args: argparse.Namespace) -> Any:
    """The attack ``--adv``/``--adv-preset`` ask for, or ``None``."""
    from bandguard.attacks import FGSM, PGD, attack_preset

    if args.adv_preset is not None:
        if args.adv is not None:
            raise ValueError("give --adv or --adv-preset, not both")
        return attack_preset(args.adv_preset)
    if args.adv is None:
        return None
    if args.eps is None:
        raise ValueError("--adv needs --eps, e.g. --eps 0.3")
    if args.adv == "pgd":
        return PGD(eps=args.eps, steps=args.steps, step_size=args.step_size, norm=args.norm)
    return FGSM(eps=args.eps, random_start=True, step_size=args.step_size)


def _train_recipe(args: argparse.Namespace) -> int:
    """``train --recipe NAME``: the zoo's recipe, trained (or loaded) and written to ``--out``."""
    import shutil

    from bandguard.bench.zoo import reference_model

    start = time.perf_counter()
    model, meta = reference_model(args.recipe, retrain=args.retrain, progress=False if args.quiet else None,
                                  device=_device(args.device), seed=args.seed)
    if meta.get("published"):
        from bandguard.models import save_checkpoint

        save_checkpoint(args.out, model, arch=meta["arch"], dataset=meta["dataset"],
                        test_accuracy=meta["test_accuracy"], recipe=meta["recipe"])
    else:
        shutil.copyfile(meta["path"], args.out)
    how = "loaded" if meta.get("cached") else "trained"
    tta = f" ({meta['tta_accuracy']:.2%} with test-time augmentation)" if "tta_accuracy" in meta else ""
    print(f"{how} {args.recipe} in {time.perf_counter() - start:.1f} s; test accuracy "
          f"{meta['test_accuracy']:.2%}{tta}; checkpoint {args.out}")
    return 0


def _train_run(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> int:
    if getattr(args, "recipe", None) is not None:
        return _train_recipe(args)
    from bandguard.data import load_dataset
    from bandguard.defenses import parse_regularizer
    from bandguard.models import check_input_shape, create_model
    from bandguard.training import TrainConfig, dataset_defaults, train

    extra = dict(extra or {})
    if getattr(args, "reg", None):
        extra["regularizers"] = tuple(parse_regularizer(spec) for spec in args.reg)
    if hasattr(args, "adv"):
        adversary = _train_adversary(args)
        if adversary is not None:
            extra.update(adversary=adversary, adversary_mode=args.adv_mode)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or dataset_defaults(args.dataset)["lr"],
        weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, mode=args.mode,
        sigma=args.sigma, radius=args.radius, filter_shape=args.filter_shape,
        filter_rescale=args.filter_rescale, limit=args.limit, amp=args.amp,
        augment=dataset_defaults(args.dataset)["augment"] if args.augment is None else args.augment,
        checkpoint=args.out, resume=args.resume, arch=args.arch, dataset=args.dataset, **extra,
    )
    train_set = load_dataset(args.dataset, "train")
    check_input_shape(args.arch, train_set.images.shape[1:], source=f"--dataset {args.dataset!r}")
    test_set = load_dataset(args.dataset, "test")
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = create_model(args.arch)
    start = time.perf_counter()
    result = train(model, train_set, config, test_data=test_set, device=_device(args.device),
                   progress=False if args.quiet else None)
    for logs in result.history:
        print("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()))
    print(f"trained {args.arch} on {args.dataset} in {time.perf_counter() - start:.1f} s; "
          f"test accuracy {result.test_accuracy:.2%}; checkpoint {args.out}")
    return 0


# --------------------------------------------------------------------------- demo


def _demo_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto")
    p.add_argument("--retrain", action="store_true", help="ignore the cached model (and the stored results)")
    p.add_argument("-n", type=positive_int, default=100, help="test images evaluated")
    p.add_argument("--out", type=output_dir, default="bandguard-demo",
                   help="folder for the report, CSV, JSON and figures")
    p.add_argument("--force", action="store_true", help="recompute instead of reusing stored cells")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _demo_run(args: argparse.Namespace) -> int:
    """The tour: the MNIST CNN bare and behind three defenses, judged by the harness."""
    from bandguard.bench.demo import demo_spec, run_demo

    start = time.perf_counter()
    print("bandguard demo: MNIST CNN, bare and with lowpass / post-averaging / kernel smoothing,")
    print("under adaptive PGD (EOT where randomized), the Fourier-basis attack and APGD-DLR at 3 L2 budgets")
    spec = demo_spec(args.out, n=args.n, device=args.device)
    with Bars(spec.n, progress=False if args.quiet else None) as progress:
        demo = run_demo(args.out, n=args.n, device=args.device, retrain=args.retrain, force=args.force,
                        progress=progress)
    acc = demo.model_meta.get("test_accuracy")
    print(f"model: mnist_cnn ({'cached' if demo.model_meta.get('cached') else 'trained now'}"
          + (f", test accuracy {acc:.2%})" if isinstance(acc, float) else ")"))
    _print_bench(demo.bench, Path(args.out))
    print(f"figures: {demo.files['heatmap']}, {demo.files['spectrum']} and robust_*.png in {args.out}")
    print(f"done in {time.perf_counter() - start:.0f} s; next (about 45 s on 2 CPU cores): "
          f"bandguard bench examples/specs/mnist_linf.toml")
    return 0


# --------------------------------------------------------------------------- heatmap, spectrum


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model CHECKPOINT`` or, explicitly running Python code, ``--model-code package.module:function``."""
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", help="checkpoint file (read only, never run as code); "
                                       "ARCH:FILE loads a bare state dict into a registered arch")
    group.add_argument("--model-code", metavar="PACKAGE.MODULE:FUNCTION",
                       help="build the model by importing PACKAGE.MODULE and calling FUNCTION(): "
                            "RUNS that code, use only code you trust")
    group.add_argument("--robustbench", metavar="NAME",
                       help="a RobustBench model (e.g. Standard) through the robustbench package, read offline "
                            "from --model-dir/<--dataset>/<--threat-model>/NAME.pt")
    group.add_argument("--torchvision", metavar="NAME",
                       help="a torchvision classifier (e.g. resnet50) behind ImageNet normalization, "
                            "weights from --weights (a local file)")
    p.add_argument("--threat-model", default="Linf", choices=["Linf", "L2", "corruptions"], help="with --robustbench")
    p.add_argument("--model-dir", default="models", help="with --robustbench: RobustBench's model folder")
    p.add_argument("--num-classes", type=positive_int, default=None, help="with --torchvision (default 1000)")
    p.add_argument("--weights", default=None, help="with --torchvision: a local weights file (else random)")
    p.add_argument("--amp", default="off", choices=["off", "bf16", "auto"],
                   help="bf16 autocast for the model's forwards (logits and input gradients stay float32); "
                        "auto: where the device computes bf16 natively (about 2x faster on such CPUs)")


_MODEL_FLAGS = {"model": "checkpoint", "model_code": "code", "robustbench": "robustbench", "torchvision": "torchvision"}


def _load_cli_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """The model of ``--model``/``--model-code``/``--robustbench``/``--torchvision`` (built by
    :func:`bandguard.bench.loading.load_model`, as a spec's)."""
    from bandguard.bench.loading import load_model
    from bandguard.bench.spec import ModelSpec

    dest = next(d for d in _MODEL_FLAGS if getattr(args, d, None))
    flag = "--" + dest.replace("_", "-")
    fields: dict[str, Any] = {_MODEL_FLAGS[dest]: getattr(args, dest)}
    if dest == "robustbench":
        fields.update(dataset=args.dataset, threat_model=args.threat_model, model_dir=args.model_dir)
    elif args.num_classes is not None or args.weights is not None:
        if dest != "torchvision":
            raise ValueError(f"--num-classes and --weights go with --torchvision, not {flag}")
        fields.update(num_classes=args.num_classes, checkpoint=args.weights)
    try:
        return load_model(ModelSpec(name=_model_label(args), **fields), device)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise type(err)(f"{flag}: {err}") from None


def _model_label(args: argparse.Namespace) -> str:
    return next(getattr(args, d) for d in _MODEL_FLAGS if getattr(args, d, None))


def _model_and_data(args: argparse.Namespace, before_data: Callable[[torch.nn.Module], None] | None = None,
                    ) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    """The model from ``--model``/``--model-code`` and the first ``-n`` test images of ``--dataset``;
    ``before_data(model)`` checks what needs the model (a layer name) before any data loads."""
    from bandguard._amp import BF16Forward, native_bf16
    from bandguard.bench.loading import check_model_fits
    from bandguard.bench.zoo import resolve_dataset
    from bandguard.data import load_dataset

    if args.dataset is None and args.model is None:
        raise ValueError(f"--dataset is needed: {_model_label(args)!r} does not name its data set")
    dataset = resolve_dataset(args.model, args.dataset)
    device = _device(args.device)
    model = _load_cli_model(args, device)
    if before_data is not None:
        before_data(model)
    x, y = load_dataset(dataset, "test").tensors(args.n, device=device)
    check_model_fits(model, x, None, device, what="--model", data=dataset)
    if args.amp == "bf16" or (args.amp == "auto" and native_bf16(device)):
        model = BF16Forward(model)
    return model, x, y, dataset


def _heatmap_parser(p: argparse.ArgumentParser) -> None:
    from bandguard.spectral.heatmap import Sign

    _add_model_arguments(p)
    p.add_argument("--dataset", default=None, help="mnist, cifar10, ... (default: the checkpoint's)")
    p.add_argument("--eps", type=nonnegative_number, default=4.0, help="L2 norm per channel (paper: 4 on CIFAR-10)")
    p.add_argument("-n", type=positive_int, default=1000, help="test images")
    p.add_argument("--sign", default="random", choices=[s.value for s in Sign])
    p.add_argument("--layer", default=None, help="map the L2 change of this module's output instead")
    p.add_argument("--max-batch", type=positive_int, default=None, help="images per forward")
    p.add_argument("--max-frequency", type=nonnegative_int, default=None,
                   help="map only the centred square |u|, |v| <= this (31: Yin et al.'s 63 x 63 ImageNet maps)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=png_file, default="heatmap.png", help="PNG path; the data goes beside it as .json")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or time estimate")


def _heatmap_run(args: argparse.Namespace) -> int:
    from bandguard.spectral import fourier_heatmap
    from bandguard.spectral.plots import plot_heatmap

    def check_layer(model: torch.nn.Module) -> None:
        names = [name for name, _ in model.named_modules() if name]
        if args.layer is not None and args.layer not in names:
            import difflib

            close = difflib.get_close_matches(args.layer, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--layer: the model has no module {args.layer!r}{hint}; its modules are "
                             f"{', '.join(names[:40])}")

    model, x, y, dataset = _model_and_data(args, check_layer)
    if not args.quiet:
        from bandguard.bench.cost import seconds_per_forward
        from bandguard.fourier import frequency_orbits

        m = args.max_frequency
        k = frequency_orbits(*x.shape[-2:], max_frequency=m, device=x.device)[0].shape[0]
        seconds = seconds_per_forward(model, x[:64]) * len(y) * (k + 1)
        announce_estimate(seconds, f"the heat map ({k} frequencies x {len(y)} images)", hint="fewer images (-n)")
    generator = torch.Generator(device=x.device).manual_seed(args.seed)
    start = time.perf_counter()
    result = fourier_heatmap(model, x, y, eps=args.eps, sign=args.sign, layer=args.layer,
                             max_batch=args.max_batch, max_frequency=args.max_frequency,
                             generator=generator, progress=False if args.quiet else None)
    elapsed = time.perf_counter() - start
    plot_heatmap(result, args.out)
    h, w = result.heatmap.shape
    peak = int(result.heatmap.argmax())
    what = "error" if result.layer is None else f"L2 change of {result.layer}"
    print(f"Fourier heat map of {_model_label(args)} on {result.n} {dataset} test images, eps={result.eps:g}: "
          f"clean error {result.clean:.2%}")
    print(f"{what}: mean {float(result.heatmap.mean()):.4g}, max {float(result.heatmap.max()):.4g} at "
          f"frequency ({peak // w - h // 2}, {peak % w - w // 2}), min {float(result.heatmap.min()):.4g}")
    print(f"{elapsed:.1f} s; wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    return 0


def _spectrum_parser(p: argparse.ArgumentParser) -> None:
    from bandguard.attacks import ATTACKS, NORMS

    _add_model_arguments(p)
    p.add_argument("--compare", default=None,
                   help="a second model (e.g. adversarially trained) attacked on the same images")
    p.add_argument("--names", default=None, help="labels of the two models, comma-separated")
    p.add_argument("--dataset", default=None, help="mnist, cifar10, ... (default: the checkpoint's)")
    p.add_argument("--attack", default="pgd", choices=ATTACKS.names())
    p.add_argument("--eps", type=nonnegative_number, required=True, help="budget, e.g. 8/255")
    p.add_argument("--norm", default=None, choices=NORMS)
    p.add_argument("--steps", type=positive_int, default=None)
    p.add_argument("-n", type=positive_int, default=500, help="test images")
    p.add_argument("--radius", type=nonnegative_number, default=None, help="low/high cut-off (default min(H, W) / 4)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=png_file, default="spectrum.png",
                   help="PNG path; radial profiles go to <out>_radial.png, data beside each as .json")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or time estimate")


def _spectrum_run(args: argparse.Namespace) -> int:
    from bandguard.attacks import create_attack
    from bandguard.models import load_model
    from bandguard.spectral import compare_attack_spectra
    from bandguard.spectral.plots import plot_radial_profiles, plot_spectra

    # Every name is checked before any data loads: the attack, its options and --compare.
    options = {k: v for k, v in (("norm", args.norm), ("steps", args.steps)) if v is not None}
    attack = create_attack(args.attack, eps=args.eps, **options)
    other = None
    if args.compare:
        try:
            other = load_model(args.compare)
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise type(err)(f"--compare: {err}") from None
    model, x, y, dataset = _model_and_data(args)
    models, names = [model], [Path(_model_label(args)).stem]
    if other is not None:
        models.append(other.to(x.device).eval())
        names.append(Path(args.compare).stem)
    if args.names:
        names = [part.strip() for part in args.names.split(",")]
    if not args.quiet:
        from bandguard.bench.cost import attack_forwards, seconds_per_forward

        seconds = sum(seconds_per_forward(m, x[:64]) for m in models) * len(y) * attack_forwards(attack, x.shape[1:])
        announce_estimate(seconds, f"{args.attack} on {len(models)} model(s) x {len(y)} images",
                          hint="fewer images (-n) or steps")
    start = time.perf_counter()
    comparison = compare_attack_spectra(models, attack, x, y, names=names, radius=args.radius)
    elapsed = time.perf_counter() - start
    out = Path(args.out)
    radial = out.with_name(f"{out.stem}_radial{out.suffix or '.png'}")
    plot_spectra(comparison, out, title=f"E|F(x_adv - x)|, {args.attack} eps={args.eps:.4g}")
    plot_radial_profiles(comparison, radial)
    print(f"{args.attack} (eps={args.eps:.4g}) perturbation spectra on {x.shape[0]} {dataset} test images")
    for name, spectrum in zip(comparison.names, comparison.spectra):
        print(f"  {name}: high-frequency energy share {spectrum.high_fraction:.1%} "
              f"(radius >= {spectrum.radius:g})")
    print(f"{elapsed:.1f} s; wrote {out}, {radial} and their .json data")
    return 0


# --------------------------------------------------------------------------- attack


def _attack_parser(p: argparse.ArgumentParser) -> None:
    from bandguard.attacks import ATTACKS, LOSSES, NORMS
    from bandguard.defenses import DEFENSES

    _add_model_arguments(p)
    p.add_argument("--dataset", default=None, help="mnist, cifar10, ... (default: the checkpoint's)")
    p.add_argument("--attack", default="pgd",
                   help=f"{', '.join(ATTACKS.names())} or foolbox:<Name> (e.g. foolbox:LinfPGD); standard: "
                        "APGD-CE, APGD-T, Fourier-basis and Square cascaded, worst case per image")
    p.add_argument("--eps", type=nonnegative_numbers, required=True,
                   help="budgets, comma-separated: 0.1,0.2,8/255; for fourier and fourier_greedy the L2 "
                        "norm per channel, as in Yin et al. and the heat map (4 on CIFAR-10)")
    p.add_argument("--norm", default=None, choices=NORMS, help="for pgd (default linf)")
    p.add_argument("--steps", type=positive_int, default=None, help="iterations (pgd default 40)")
    p.add_argument("--step-size", type=positive_number, default=None, help="absolute step size")
    p.add_argument("--restarts", type=positive_int, default=None, help="pgd random restarts")
    p.add_argument("--loss", default=None, choices=LOSSES,
                   help="ce or margin (pgd, fgsm, fgm); ce or dlr (apgd); each attack refuses the others")
    p.add_argument("--max-queries", type=positive_int, default=None,
                   help="black-box query budget per image (standard: Square's)")
    p.add_argument("-n", type=positive_int, default=1000, help="test images (the first n)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--memory", type=memory_size, default=None,
                   help="bytes an attack call may take, e.g. 4GiB (default: half the device's available memory); "
                        "batches shrink to fit")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=output_file, default=None, help="JSON file for the results (written atomically)")
    p.add_argument("--defense", action="append", default=[], metavar="SPEC",
                   help=f"defense spec NAME[:VALUE][,key=value...], repeatable; NAME one of "
                        f"{', '.join(DEFENSES.names())} (e.g. lowpass:8, post_average:1.35,K=15, "
                        "smooth:0.25): reports clean, transfer and adaptive robust accuracy side by side")
    p.add_argument("--eot", type=positive_int, default=None,
                   help="gradient samples per step (EOT) against randomized defenses (default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or time estimate")


def _attack_run(args: argparse.Namespace) -> int:
    from bandguard.attacks import attack_settings, create_attack
    from bandguard.bench import evaluate_robustness
    from bandguard.defenses import build_defense, check_defense_spec

    # Every name is checked before any data loads: the attack, its options and each defense spec.
    options = attack_settings(args.attack, norm=args.norm, steps=args.steps, step_size=args.step_size,
                              restarts=args.restarts, loss=args.loss, max_queries=args.max_queries)
    attack = create_attack(args.attack, eps=tuple(args.eps), **options)
    for spec in args.defense:
        try:
            check_defense_spec(spec)
        except ValueError as err:
            raise ValueError(f"--defense: {err}") from None
    model, x, y, dataset = _model_and_data(args)
    defenses = {spec: build_defense(spec, model).to(x.device) for spec in args.defense}
    settings = {"eot": args.eot} if args.eot is not None else {}
    with Bars(len(y), progress=False if args.quiet else None) as progress:
        result = evaluate_robustness(model, x, y, {args.attack: attack}, defenses=defenses,
                                     name=_model_label(args), batch_size=args.batch_size, seed=args.seed,
                                     memory=args.memory,
                                     progress=progress, scale_invariant=False, **settings)
    print(f"{attack!r} on {len(y)} {dataset} test images ({result.device}, {result.seconds:.1f} s)")
    if defenses:
        print("transfer: crafted on the undefended model; adaptive: through the defense (EOT if randomized)")
        print(result.to_markdown())
    else:
        cell = result.cells[-1]
        print(f"clean accuracy {result.rows[0].clean_accuracy:.2%}")
        print(f"{'eps':>10}  {'robust acc':>10}  {'success':>8}  {'mean ' + cell.norm:>10}  {'queries/img':>11}")
        for r, mean_norm in zip(result.rows, cell.mean_norm):
            print(f"{r.eps:>10.4g}  {r.robust_accuracy:>10.2%}  {1 - r.robust_accuracy:>8.2%}  "
                  f"{mean_norm:>10.4g}  {r.forwards_per_sample:>11.1f}")
    if args.out:
        print(f"wrote {write_json_atomic(args.out, result.to_dict())}")
    return 0


# --------------------------------------------------------------------------- bench


def _bench_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="TOML spec of models x defenses x attacks x eps (see examples/specs/)")
    p.add_argument("--force", action="store_true", help="recompute every cell instead of resuming")
    p.add_argument("--device", default=None, help="override the spec's device (auto, cpu, cuda, cuda:1)")
    p.add_argument("--out", type=output_dir, default=None, help="override the spec's output folder")
    p.add_argument("--memory", type=memory_size, default=None, help="override the spec's memory budget, e.g. 4GiB")
    p.add_argument("-n", type=positive_int, default=None,
                   help="override the spec's number of images (a quick run: -n 20); a separate set of cells")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or time estimates")


def _print_bench(result: Any, out: Path) -> None:
    print(result.summary_markdown())
    for flag in result.flags:
        where = " / ".join(part for part in (flag.model, flag.defense, flag.mode, flag.attack) if part)
        print(f"sanity flag {flag.check} ({where}): {flag.reason}")
    print(f"summary of {len(result.rows)} rows (every attack, cumulative rows marked, in {out / 'report.md'}); "
          f"{result.computed} cells computed, {result.reused} reused; {result.seconds:.1f} s on {result.device}")
    print(f"wrote {out / 'report.md'}, {out / 'results.csv'}, {out / 'results.json'} ({out / 'results.sqlite'})")


def _bench_run(args: argparse.Namespace) -> int:
    import dataclasses

    from bandguard.bench import load_spec, run

    spec = load_spec(args.spec)
    if args.device is not None:
        spec = dataclasses.replace(spec, device=args.device)
    if args.out is not None:
        spec = dataclasses.replace(spec, out=args.out)
    if args.memory is not None:
        spec = dataclasses.replace(spec, memory=args.memory)
    if args.n is not None:
        spec = dataclasses.replace(spec, n=args.n)
    rank = int(os.environ.get("RANK", "0"))
    progress = Bars(spec.n or None, progress=False if args.quiet or rank != 0 else None)
    try:
        result = run(spec, force=args.force, progress=progress)
    except RuntimeError as err:
        print(f"bandguard bench: runtime error: {err}", file=sys.stderr)
        return 1
    finally:
        progress.close()
    if rank == 0:
        _print_bench(result, Path(spec.out))
    return 0


# --------------------------------------------------------------------------- entry point

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "demo": ("train (or load) a MNIST CNN and show what bandguard does", _demo_parser, _demo_run),
    "train": ("train a reference net (natural, noise, filtered)", _train_parser, _train_run),
    "heatmap": ("Fourier heat map of a model (Yin et al. 1906.08988)", _heatmap_parser, _heatmap_run),
    "spectrum": ("spectrum of an attack's perturbations, optionally two models side by side",
                 _spectrum_parser, _spectrum_run),
    "attack": ("clean and robust accuracy of a model under an attack, per eps", _attack_parser, _attack_run),
    "bench": ("run a benchmark spec: models x defenses x attacks x eps, resumable", _bench_parser, _bench_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bandguard", description="Adversarial robustness through the frequency domain.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    parser.add_argument("--version", action="version", version=f"bandguard {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_HelpFormatter)
        # Also accepted after the command; SUPPRESS keeps a flag given before it.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="on an error, show the full traceback")
        add_arguments(command)
        _show_defaults(command)
    return parser


# Bad input the user can fix by changing the command line or its files: exit code 2. Anything else
# (out of memory, a device failure, a write that fails late, a bug) is a runtime error: exit code 1.
_USAGE_ERRORS = (ValueError, TypeError, LookupError, FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def _sample_data_note(command: str, verbose: bool) -> Callable[..., None]:
    """A ``warnings.showwarning`` that turns the bundled-sample fallback into one short line per
    command (the full text, with where it looked, under ``-v``); other warnings print as usual."""
    from bandguard.data import SampleDataWarning

    shown = warnings.showwarning
    said: list[bool] = []
    warnings.simplefilter("always", SampleDataWarning)  # inside main's catch_warnings: restored after

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if not issubclass(category, SampleDataWarning):
            shown(message, category, *args, **kwargs)
            return
        if said:
            return
        said.append(True)
        text = str(message)
        if not verbose:  # what happened and what to do; where it looked (and why a download failed) under -v
            head, sep, tail = text.partition("; using the sample")
            if sep:
                text = head.split(" (looked in", 1)[0] + sep + tail
            text = text.replace(" (or root=)", "")
        print(f"bandguard {command}: note: {text}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 runtime error, 2 usage error).

    Also for what argparse ends itself (``--help``: 0, a bad argument: 2), so a caller gets the
    code back instead of a ``SystemExit``.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"bandguard {args.command}: %(message)s")
    # Time estimates are information worth a line unless --quiet (long runs warn even then).
    logging.getLogger("bandguard.progress").setLevel(
        logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    prefix = f"bandguard {args.command}: error:"
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _sample_data_note(args.command, args.verbose)
            return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"bandguard {args.command}: interrupted", file=sys.stderr)
        return 130
    except _USAGE_ERRORS as err:
        if args.debug:
            raise
        print(f"{prefix} {_one_line(err)}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, MemoryError) as err:
        if args.debug:
            raise
        print(f"{prefix} {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: still one line, the traceback on request
        if args.debug:
            raise
        print(f"{prefix} internal error ({type(err).__name__}: {_one_line(err)}); "
              f"rerun with --debug for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
