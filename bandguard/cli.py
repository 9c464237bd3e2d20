"""The ``bandguard`` command line: argument parsing and printing only.

Each subcommand is a pair of functions, ``_<name>_parser`` (declares arguments) and
``_<name>_run`` (calls the library and prints), listed in ``COMMANDS`` at the bottom.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from bandguard._io import write_json_atomic


def parse_number(text: str) -> float:
    """``"0.03"``, ``"8/255"`` or ``"1e-3"`` as a float (argparse type)."""
    try:
        return float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number like 0.03 or 8/255, got {text!r}") from None


def parse_numbers(text: str) -> list[float]:
    """Comma-separated numbers, e.g. ``"0.1,0.2,8/255"`` (argparse type)."""
    return [parse_number(part) for part in text.split(",") if part.strip()]


def _device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# --------------------------------------------------------------------------- train


def _train_parser(p: argparse.ArgumentParser) -> None:
    from bandguard.models import MODELS

    p.add_argument("--dataset", default="mnist", help="mnist, cifar10 or an ImageFolder path")
    p.add_argument("--arch", default="mnist_cnn", choices=MODELS.names())
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.05 MNIST, 0.1 else)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", default="onecycle", choices=["onecycle", "cosine", "constant"])
    p.add_argument("--mode", default="natural", choices=["natural", "gaussian", "lowpass", "highpass"])
    p.add_argument("--sigma", type=parse_number, default=0.0, help="noise level for --mode gaussian")
    p.add_argument("--radius", type=float, default=None, help="cut-off for --mode lowpass/highpass")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop + flip (default on for CIFAR-10)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="checkpoint path (written every epoch)")
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.add_argument("--reg", action="append", default=[], metavar="SPEC",
                   help="weight regularizer, repeatable: neighbor:WEIGHT[:LAYERS] or "
                        "highfreq:RADIUS:WEIGHT[:LAYERS] (LAYERS: all, first or names joined by +)")
    adv = p.add_argument_group("adversarial training")
    adv.add_argument("--adv", default=None, choices=["pgd", "fgsm"],
                     help="pgd: PGD-AT (Madry et al.); fgsm: fast FGSM with random start (Wong et al.)")
    adv.add_argument("--eps", type=parse_number, default=None, help="budget for --adv, e.g. 0.3 or 8/255")
    adv.add_argument("--steps", type=int, default=10, help="PGD steps for --adv pgd")
    adv.add_argument("--step-size", type=parse_number, default=None,
                     help="step (default 2.5*eps/steps for pgd, 1.25*eps for fgsm)")
    adv.add_argument("--norm", default="linf", choices=["linf", "l2"], help="threat model for --adv pgd")


def _train_run(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> int:
    from bandguard.data import load_dataset
    from bandguard.defenses import parse_regularizer
    from bandguard.models import create_model
    from bandguard.training import TrainConfig, train

    is_mnist = args.dataset == "mnist"
    extra = dict(extra or {})
    if getattr(args, "reg", None):
        extra["regularizers"] = tuple(parse_regularizer(spec) for spec in args.reg)
    if getattr(args, "adv", None):
        from bandguard.attacks import adversarial_example_fn

        if args.eps is None:
            raise ValueError("--adv needs --eps, e.g. --eps 0.3")
        extra["adversary"] = adversarial_example_fn(
            "pgd" if args.adv == "pgd" else "fgsm_rs", eps=args.eps, steps=args.steps,
            step_size=args.step_size, norm=args.norm, seed=args.seed,
        )
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or (0.05 if is_mnist else 0.1),
        weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, mode=args.mode,
        sigma=args.sigma, radius=args.radius, limit=args.limit, amp=args.amp,
        augment=(not is_mnist) if args.augment is None else args.augment,
        checkpoint=args.out, resume=args.resume, arch=args.arch, dataset=args.dataset, **extra,
    )
    train_set = load_dataset(args.dataset, "train")
    test_set = load_dataset(args.dataset, "test")
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = create_model(args.arch)
    start = time.perf_counter()
    result = train(model, train_set, config, test_data=test_set, device=_device(args.device))
    for logs in result.history:
        print("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()))
    print(f"trained {args.arch} on {args.dataset} in {time.perf_counter() - start:.1f} s; "
          f"test accuracy {result.test_accuracy:.2%}; checkpoint {args.out}")
    return 0


# --------------------------------------------------------------------------- demo


def _demo_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto")
    p.add_argument("--retrain", action="store_true", help="ignore the cached model")
    p.add_argument("-n", type=int, default=256, help="test images attacked and analysed")
    p.add_argument("--out", default="bandguard-demo", help="folder for the figure and the JSON summary")


def _demo_run(args: argparse.Namespace) -> int:
    """The tour: a model, an attack, two defenses judged honestly, and a Fourier heat map."""
    from tqdm.auto import tqdm

    from bandguard.attacks import PGD, evaluate_attack
    from bandguard.bench.defense_eval import evaluate_defenses
    from bandguard.bench.zoo import reference_model
    from bandguard.data import SampleDataWarning, load_dataset
    from bandguard.defenses import RECOMMENDED, LowPass
    from bandguard.spectral import fourier_heatmap
    from bandguard.spectral.plots import plot_heatmap

    start = time.perf_counter()
    device = _device(args.device)
    out = Path(args.out)
    print("1. model: mnist_cnn on MNIST, from the cache or trained now (about 30 s on 2 CPU cores)")
    # The sample fallback is worth one line of its own, not a warning with a source line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SampleDataWarning)
        model, meta = reference_model("mnist_cnn", device=device, retrain=args.retrain, progress=True)
        test_set = load_dataset("mnist", "test")
    notes = {str(w.message) for w in caught if issubclass(w.category, SampleDataWarning)}
    for w in caught:
        if not issubclass(w.category, SampleDataWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for note in sorted(notes):
        print(f"   note: {note}")
    print(f"   data: {meta['train_size']:,} training images (from {meta['data_source']}), "
          f"{len(test_set):,} test images")
    print(f"   loaded the cached mnist_cnn from {meta['path']}" if meta["cached"] else
          f"   trained mnist_cnn in {meta['train_seconds']:.0f} s; cached in {meta['path']}")
    clean = float(meta["test_accuracy"])
    print(f"   clean test accuracy of mnist_cnn: {clean:.2%}")

    n = min(args.n, len(test_set))
    x, y = test_set.tensors(n, device=device)
    attack = PGD(eps=(0.1, 0.2, 0.3), norm="linf", steps=20)
    with tqdm(total=n, desc="2. PGD-20 (Linf)", unit="img", leave=False) as bar:
        res = evaluate_attack(model, x, y, attack, callback=bar.update)
    print(f"2. white-box PGD-20 (Linf) on {n} test images: robust accuracy "
          + ", ".join(f"{a:.1%} at eps {e:g}" for e, a in zip(res.epsilons, res.robust_accuracy)))

    radius = RECOMMENDED["mnist"]["lowpass"]
    defended = {f"lowpass:{radius:g}": torch.nn.Sequential(LowPass(radius), model)}
    m = min(n, 128)
    table = evaluate_defenses(model, defended, PGD(eps=(0.1,), steps=20), x[:m], y[:m])
    print(f"3. defense, judged honestly (PGD-20 Linf eps 0.1, {m} images; transfer = crafted on the bare model):")
    for row in table.rows:
        print(f"   {row.name:<12} clean {row.clean_accuracy:6.1%}  transfer {row.transfer_accuracy[0]:6.1%}"
              f"  adaptive {row.adaptive_accuracy[0]:6.1%}")

    k = min(n, 64)
    heat = fourier_heatmap(model, x[:k], y[:k], eps=4.0, generator=torch.Generator().manual_seed(0), progress=True)
    png = out / "heatmap.png"
    out.mkdir(parents=True, exist_ok=True)
    plot_heatmap(heat, png, write_data=False)
    worst = float(heat.heatmap.max())
    print(f"4. Fourier heat map (Yin et al. 1906.08988), eps 4, {k} images: clean error {heat.clean:.1%}, "
          f"worst single frequency {worst:.1%} error; figure {png}")
    summary = {"clean_accuracy": clean, "pgd": res.to_dict(), "defenses": table.to_dict(),
               "heatmap": {"eps": heat.eps, "n": heat.n, "clean_error": heat.clean, "max_error": worst},
               "seconds": time.perf_counter() - start}
    write_json_atomic(out / "demo.json", summary)
    print(f"done in {summary['seconds']:.0f} s; summary {out / 'demo.json'}")
    print("next: bandguard attack --help | bandguard heatmap --help | bandguard train --help")
    return 0


# --------------------------------------------------------------------------- heatmap, spectrum


def _model_and_data(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    """The model from ``--model`` and the first ``-n`` test images of ``--dataset`` on ``--device``."""
    from bandguard.bench.zoo import resolve_dataset
    from bandguard.data import load_dataset
    from bandguard.models import load_model

    dataset = resolve_dataset(args.model, args.dataset)
    device = _device(args.device)
    model = load_model(args.model).to(device).eval()
    x, y = load_dataset(dataset, "test").tensors(args.n, device=device)
    return model, x, y, dataset


def _heatmap_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint path or model spec")
    p.add_argument("--dataset", default=None, help="mnist, cifar10, ... (default: the checkpoint's)")
    p.add_argument("--eps", type=parse_number, default=4.0, help="L2 norm per channel (paper: 4 on CIFAR-10)")
    p.add_argument("-n", type=int, default=1000, help="test images")
    p.add_argument("--sign", default="random", choices=["random", "positive"])
    p.add_argument("--layer", default=None, help="map the L2 change of this module's output instead")
    p.add_argument("--max-batch", type=int, default=None, help="images per forward")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="heatmap.png", help="PNG path; the data goes beside it as .json")


def _heatmap_run(args: argparse.Namespace) -> int:
    from bandguard.spectral import fourier_heatmap
    from bandguard.spectral.plots import plot_heatmap

    model, x, y, dataset = _model_and_data(args)
    generator = torch.Generator(device=x.device).manual_seed(args.seed)
    start = time.perf_counter()
    result = fourier_heatmap(model, x, y, eps=args.eps, sign=args.sign, layer=args.layer,
                             max_batch=args.max_batch, generator=generator, progress=True)
    elapsed = time.perf_counter() - start
    plot_heatmap(result, args.out)
    h, w = result.heatmap.shape
    peak = int(result.heatmap.argmax())
    what = "error" if result.layer is None else f"L2 change of {result.layer}"
    print(f"Fourier heat map of {args.model} on {result.n} {dataset} test images, eps={result.eps:g}: "
          f"clean error {result.clean:.2%}")
    print(f"{what}: mean {float(result.heatmap.mean()):.4g}, max {float(result.heatmap.max()):.4g} at "
          f"frequency ({peak // w - h // 2}, {peak % w - w // 2}), min {float(result.heatmap.min()):.4g}")
    print(f"{elapsed:.1f} s; wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    return 0


def _spectrum_parser(p: argparse.ArgumentParser) -> None:
    from bandguard.attacks import ATTACKS

    p.add_argument("--model", required=True, help="checkpoint path or model spec")
    p.add_argument("--compare", default=None,
                   help="a second model (e.g. adversarially trained) attacked on the same images")
    p.add_argument("--names", default=None, help="labels of the two models, comma-separated")
    p.add_argument("--dataset", default=None, help="mnist, cifar10, ... (default: the checkpoint's)")
    p.add_argument("--attack", default="pgd", choices=ATTACKS.names())
    p.add_argument("--eps", type=parse_number, required=True, help="budget, e.g. 8/255")
    p.add_argument("--norm", default=None, choices=["linf", "l2"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("-n", type=int, default=500, help="test images")
    p.add_argument("--radius", type=float, default=None, help="low/high cut-off (default min(H, W) / 4)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="spectrum.png",
                   help="PNG path; radial profiles go to <out>_radial.png, data beside each as .json")


def _spectrum_run(args: argparse.Namespace) -> int:
    from bandguard.attacks import create_attack
    from bandguard.models import load_model
    from bandguard.spectral import compare_attack_spectra
    from bandguard.spectral.plots import plot_radial_profiles, plot_spectra

    model, x, y, dataset = _model_and_data(args)
    options = {k: v for k, v in (("norm", args.norm), ("steps", args.steps)) if v is not None}
    attack = create_attack(args.attack, eps=args.eps, **options)
    models, names = [model], [Path(args.model).stem]
    if args.compare:
        models.append(load_model(args.compare).to(x.device).eval())
        names.append(Path(args.compare).stem)
    if args.names:
        names = [part.strip() for part in args.names.split(",")]
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
    from bandguard.attacks import ATTACKS

    p.add_argument("--model", required=True, help="checkpoint path or model spec")
    p.add_argument("--dataset", default=None, help="mnist, cifar10, ... (default: the checkpoint's)")
    p.add_argument("--attack", default="pgd",
                   help=f"{', '.join(ATTACKS.names())} or foolbox:<Name> (e.g. foolbox:LinfPGD)")
    p.add_argument("--eps", type=parse_numbers, required=True, help="budgets, comma-separated: 0.1,0.2,8/255")
    p.add_argument("--norm", default=None, choices=["linf", "l2"], help="for pgd (default linf)")
    p.add_argument("--steps", type=int, default=None, help="iterations (pgd default 40)")
    p.add_argument("--step-size", type=parse_number, default=None, help="absolute step size")
    p.add_argument("--restarts", type=int, default=None, help="pgd random restarts")
    p.add_argument("--loss", default=None, choices=["ce", "margin"])
    p.add_argument("--max-queries", type=int, default=None, help="black-box query budget per image")
    p.add_argument("-n", type=int, default=1000, help="test images (the first n)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON file for the results (written atomically)")
    p.add_argument("--defense", action="append", default=[], metavar="SPEC",
                   help="defense spec, repeatable (e.g. lowpass:8, post_average:K=15,R=1.35, smooth:0.25): "
                        "reports clean, transfer and adaptive robust accuracy per defense side by side")
    p.add_argument("--eot", type=int, default=None,
                   help="gradient samples per step (EOT) against randomized defenses (default 10)")


def _attack_defenses(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     dataset: str, attack: Any) -> int:
    from bandguard.bench.defense_eval import evaluate_defenses
    from bandguard.defenses import build_defense

    defenses = {spec: build_defense(spec, model).to(x.device) for spec in args.defense}
    start = time.perf_counter()
    table = evaluate_defenses(model, defenses, attack, x, y, eot_samples=args.eot,
                              batch_size=args.batch_size,
                              callback=lambda name: print(f"evaluating {name} ...", file=sys.stderr))
    print(f"{attack!r} on {table.n} {dataset} test images ({table.device}, "
          f"{time.perf_counter() - start:.1f} s); accuracies in %")
    print("transfer: crafted on the undefended model; adaptive: through the defense (EOT if randomized)")
    print(table.to_markdown())
    if args.out:
        print(f"wrote {write_json_atomic(args.out, table.to_dict())}")
    return 0


def _attack_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bandguard.attacks import create_attack, evaluate_attack

    model, x, y, dataset = _model_and_data(args)
    given = {"norm": args.norm, "steps": args.steps, "step_size": args.step_size,
             "restarts": args.restarts, "loss": args.loss, "max_queries": args.max_queries}
    options = {k: v for k, v in given.items() if v is not None}
    if not args.attack.startswith("foolbox:"):
        options["seed"] = args.seed
    eps = args.eps[0] if len(args.eps) == 1 else tuple(args.eps)
    if args.eot is not None and not args.defense:
        options["eot_samples"] = args.eot
    attack = create_attack(args.attack, eps=eps, **options)
    if args.defense:
        return _attack_defenses(args, model, x, y, dataset, attack)
    with tqdm(total=len(y), desc=args.attack, unit="img") as bar:
        result = evaluate_attack(model, x, y, attack, batch_size=args.batch_size, callback=bar.update)
    print(f"{attack!r} on {result.n} {dataset} test images ({result.device}, {result.seconds:.1f} s)")
    print(f"clean accuracy {result.clean_accuracy:.2%}")
    print(f"{'eps':>10}  {'robust acc':>10}  {'success':>8}  {'mean ' + result.norm:>10}  {'queries/img':>11}")
    for i, eps in enumerate(result.epsilons):
        print(f"{eps:>10.4g}  {result.robust_accuracy[i]:>10.2%}  {result.success_rate[i]:>8.2%}  "
              f"{result.mean_norm[i]:>10.4g}  {result.forwards[i] / result.n:>11.1f}")
    if args.out:
        print(f"wrote {result.save(args.out)}")
    return 0


# --------------------------------------------------------------------------- entry point

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "demo": ("train (or load) a MNIST CNN and show what bandguard does", _demo_parser, _demo_run),
    "train": ("train a reference net (natural, noise, filtered)", _train_parser, _train_run),
    "heatmap": ("Fourier heat map of a model (Yin et al. 1906.08988)", _heatmap_parser, _heatmap_run),
    "spectrum": ("spectrum of an attack's perturbations, optionally two models side by side",
                 _spectrum_parser, _spectrum_run),
    "attack": ("clean and robust accuracy of a model under an attack, per eps", _attack_parser, _attack_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bandguard", description="Adversarial robustness through the frequency domain."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return COMMANDS[args.command][2](args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        if args.verbose:
            raise
        print(f"bandguard {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
