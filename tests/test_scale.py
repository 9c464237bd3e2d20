"""ImageNet-size inputs in a process capped at 8 GiB of address space (issue 21's acceptance): the
224 x 224 Fourier heat map with ``max_frequency``, FourierGreedy with a query budget and the
harness through ``PostAveraging(K=15)`` on a torchvision ResNet-18 behind ImageNet normalization
(random weights: what is measured is that they run, with their sizes, not what they find).

Each runs in a child process whose ``RLIMIT_AS`` is 8 GiB, so an allocation past it fails there
("can't allocate memory") instead of swapping this machine. Importing torch with CUDA maps about
3.5 GiB of that address space before any tensor exists.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CAP = 8 * 2**30

_SCRIPT = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_AS)[1]))
import torch
from bandguard._memory import available_memory
from bandguard.models import torchvision_model

torch.manual_seed(0)
model = torchvision_model("resnet18")
x = torch.rand(2, 3, 224, 224)
with torch.no_grad():  # the random net's own labels, so every image is attacked
    y = model(x).argmax(1)
start, out = time.perf_counter(), {"available": available_memory("cpu")}
if sys.argv[1] == "heatmap":
    from bandguard.spectral import fourier_heatmap

    result = fourier_heatmap(model, x, y, eps=4.0, max_frequency=3, generator=torch.Generator().manual_seed(0))
    out.update(shape=list(result.heatmap.shape), finite=bool(result.heatmap.isfinite().all()))
elif sys.argv[1] == "greedy":
    from bandguard.attacks import FourierGreedy

    result = FourierGreedy(eps=4.0, max_queries=8, seed=0)(model, x, y)[0]
    out.update(queries=int(result.forwards.max()), shape=list(result.x_adv.shape))
else:
    from bandguard.attacks import FGSM
    from bandguard.bench import evaluate_robustness
    from bandguard.defenses import PostAveraging

    # A small radius keeps the random net's averaged label its own, so the attack has work to do.
    pa = PostAveraging(model, K=15, radius_l2=0.05, generator=torch.Generator().manual_seed(0))
    result = evaluate_robustness(model, x[:1], y[:1], {"fgsm": FGSM(eps=(1 / 255,))}, defenses={"pa": pa},
                                 eot=1, scale_invariant=False)
    out.update(rows=len(result.rows), forward_cost=pa.forward_cost,
               forwards=[int(c.forwards.sum()) for c in result.cells if c.defense == "pa" and c.mode == "adaptive"])
with open("/proc/self/status") as f:
    status = dict(line.split(":", 1) for line in f.read().splitlines())
out.update(seconds=time.perf_counter() - start, peak_rss=int(status["VmHWM"].split()[0]) * 1024,
           peak_vm=int(status["VmPeak"].split()[0]) * 1024)
print(json.dumps(out))
"""


def _capped(which: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, which, str(CAP)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["peak_vm"] <= CAP and 0 < out["available"] < CAP  # the cap held and the budget saw it
    return out


pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmPeak from /proc (Linux)")


def test_the_224_heat_map_with_max_frequency_runs_in_8_gib() -> None:
    out = _capped("heatmap")
    assert out["shape"] == [7, 7] and out["finite"]


def test_fourier_greedy_with_a_query_budget_runs_in_8_gib() -> None:
    out = _capped("greedy")
    assert out["shape"] == [2, 3, 224, 224] and 1 <= out["queries"] <= 8 + 1  # the clean forward too


@pytest.mark.slow
def test_the_harness_through_post_averaging_k15_runs_in_8_gib() -> None:
    out = _capped("harness")
    assert out["forward_cost"] == 91 and out["rows"] == 3  # white-box, transfer, adaptive
    assert out["forwards"][0] >= 1  # the image was attacked through all 91 neighbours
