"""Distributed scaling: the same spec with 1 and 2 processes under torchrun (gloo on CPU).

Runs ``torchrun --nproc_per_node=P -m bandguard bench SPEC --force -q`` for each ``P`` in
``--procs``, times it, and checks the tables (``results.csv``) are byte-identical. On a GPU node
use ``--device cuda`` (NCCL) with ``P`` up to the number of GPUs.

    python benchmarks/distributed_scaling.py -n 200 --procs 1 2 --write
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, write_section

SPEC = """
dataset = "mnist"
n = {n}
batch_size = {batch}
device = "{device}"
seed = 0
out = "{out}"
sanity = false
defenses = ["lowpass:10"]

[[models]]
name = "cnn"
reference = "mnist_cnn"

[[attacks]]
attack = "pgd"
eps = [0.1, 0.2, 0.3]
steps = 10
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    root = Path(__file__).resolve().parents[1]
    times, tables = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for procs in args.procs:
            out = Path(tmp) / f"out{procs}"
            spec = Path(tmp) / f"spec{procs}.toml"
            spec.write_text(SPEC.format(n=args.n, batch=args.batch_size, device=args.device, out=out))
            env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS=str(max(1, os.cpu_count() // procs)))
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                            "-m", "bandguard", "bench", str(spec), "--force", "-q"], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            times[procs] = time.perf_counter() - start
            tables[procs] = (out / "results.csv").read_bytes()
    same = len(set(tables.values())) == 1
    base = times[args.procs[0]]
    lines = ["## Distributed scaling", "",
             f"MNIST CNN + lowpass, PGD-10 at 3 Linf eps, {args.n} images, device {args.device}; "
             f"CPU: {cpu_name()} ({os.cpu_count()} cores, shared machine). Tables identical: {same}.", "",
             "| processes | seconds (incl. start-up) | speed-up |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {base / v:.2f} |" for k, v in times.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section("Harness: Distributed scaling", text, Path(__file__).with_name("RESULTS.md"))
    if not same:
        raise SystemExit("tables differ between process counts")


if __name__ == "__main__":
    main()
