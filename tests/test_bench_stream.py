"""The harness on streamed data: an ImageFolder of mixed-size JPEGs (resize + centre crop) gives the
table of the in-memory path on the same images, through ``evaluate_robustness`` and a ``[data]``
spec, resumes, and holds a few batches whatever ``n``."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _folders import CLASSES, write_folder
from _interrupt import Interrupted, stop_after
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bandguard.attacks import FGSM, PGD
from bandguard.bench import evaluate_robustness, parse_spec, run
from bandguard.bench.harness import build_defense
from bandguard.bench.loading import folder_source
from bandguard.bench.results import ResultStore
from bandguard.bench.spec import SpecError
from bandguard.data import FolderSource

EPS = (0.05, 0.2, 0.3)


def colour_net() -> nn.Module:
    """Classifies by the brightest mean channel (the class's tint below) through a 2x2 conv."""
    net = nn.Sequential(nn.Conv2d(3, 3, 2, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(3, 3))
    with torch.no_grad():
        net[0].weight.zero_()
        for c in range(3):
            net[0].weight[c, c] = 0.25
        net[0].bias.zero_()
        net[4].weight.copy_(10 * torch.eye(3))
        net[4].bias.zero_()
    return net.eval()


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/val/<class>/*.jpg`` (8 mixed-size JPEGs per class) and ``root/ids.txt``."""
    root = tmp_path_factory.mktemp("imagenet")
    write_folder(root, 8, split="val", random_tint=True)
    (root / "ids.txt").write_text("".join(f"{c}/{i:03d}.jpg\n" for i in (5, 1, 7, 2, 0, 3) for c in CLASSES[::-1]))
    return root


def attacks() -> dict:
    return {"fgsm": FGSM(eps=EPS), "pgd": PGD(eps=EPS, steps=3)}  # PGD draws a random start


def assert_same(a, b) -> None:
    assert a.rows == b.rows and a.flags == b.flags
    assert len(a.cells) == len(b.cells)
    for ca, cb in zip(a.cells, b.cells):
        assert (ca.defense, ca.mode, ca.attack) == (cb.defense, cb.mode, cb.attack)
        for field in ("robust", "forwards", "gradients", "norms"):
            assert torch.equal(getattr(ca, field), getattr(cb, field)), (ca.defense, ca.mode, ca.attack, field)


def test_streamed_table_equals_the_in_memory_table(imagenet_like: Path) -> None:
    net = colour_net()
    src = FolderSource(imagenet_like, "val", resize=36, center_crop=32)
    x, y = src.tensors()
    # A randomized defense too: its noise, like PGD's random start, is seeded per batch of the same cut.
    defenses = {"post_average:0.1,K=2": build_defense("post_average:0.1,K=2", net)}
    kw = {"defenses": defenses, "batch_size": 5, "eot": 2, "seed": 4, "sanity": True, "sanity_n": 8}
    memory = evaluate_robustness(net, x, y, attacks(), **kw)
    streamed = evaluate_robustness(net, src, attacks=attacks(), **kw)
    assert_same(memory, streamed)
    # The table means something: every image is clean-correct, eps 0.05 breaks few, 0.3 most.
    worst = [r for r in memory.rows if r.defense == "none" and r.attack == "worst case"]
    accs = [r.robust_accuracy for r in worst]
    assert [r.clean_accuracy for r in worst] == [1.0] * 3 and accs[0] > accs[1] > accs[2] and 0 < accs[1] < 1
    # A DataLoader (its own batch size, two workers) and an index list give the same cells too.
    kw.update(defenses={}, sanity=False, scale_invariant=False)
    memory = evaluate_robustness(net, x, y, attacks(), **kw)
    assert_same(memory, evaluate_robustness(net, DataLoader(src, batch_size=7, num_workers=2), attacks=attacks(),
                                            **kw))
    listed = FolderSource(imagenet_like, "val", resize=36, center_crop=32, index=imagenet_like / "ids.txt")
    xl, yl = listed.tensors()
    assert_same(evaluate_robustness(net, xl, yl, attacks(), **kw), evaluate_robustness(net, listed, attacks=attacks(),
                                                                                        **kw))


def test_streamed_errors(imagenet_like: Path) -> None:
    net, src = colour_net(), FolderSource(imagenet_like, "val", resize=36, center_crop=32)
    with pytest.raises(TypeError, match=r"pass them by keyword: evaluate_robustness\(model, data, attacks="):
        evaluate_robustness(net, src, attacks())
    with pytest.raises(ValueError, match=r"the DataLoader must read its dataset in order"):
        evaluate_robustness(net, DataLoader(src, batch_size=4, shuffle=True), attacks=attacks())
    with pytest.raises(ValueError, match=r"data batch \[0:24\] labels holds class 2 but the model has 2 classes"):
        two = nn.Sequential(*colour_net()[:4], nn.Linear(3, 2))
        evaluate_robustness(two, src, attacks=attacks(), batch_size=64)
    with pytest.raises(ValueError, match=r"does not take images of shape \(3, 36, 36\)"):
        evaluate_robustness(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)),
                            FolderSource(imagenet_like, "val", resize=36, center_crop=36), attacks=attacks())


def spec_data(root: Path, out: Path, **data: object) -> dict:
    return {
        "n": 18, "batch_size": 4, "seed": 2, "out": str(out), "sanity": False, "scale_invariant": False,
        "data": {"folder": str(root), "split": "val", "resize": 36, "center_crop": 32, **data},
        "models": [{"name": "net", "code": "test_bench_stream:colour_net"}],
        "attacks": [{"attack": "fgsm", "eps": list(EPS)}, {"attack": "pgd", "eps": list(EPS), "steps": 3}],
    }


def test_spec_streams_a_folder_and_resumes(imagenet_like: Path, tmp_path: Path) -> None:
    spec = parse_spec(spec_data(imagenet_like, tmp_path / "full"))
    full = run(spec)
    # The spec's samples: the seeded subset of 18 of the 24 images, as the in-memory path draws it.
    x, y = folder_source(spec).tensors()
    assert x.shape == (18, 3, 32, 32)
    memory = evaluate_robustness(colour_net(), x, y, {a.name: a.build() for a in spec.attacks}, name="net",
                                 batch_size=4, seed=2, scale_invariant=False)
    assert memory.rows == full.rows
    # Interrupted after a few batches, then resumed: the stored cells are reused, the table is the same.
    cut = parse_spec(spec_data(imagenet_like, tmp_path / "cut", workers=1))
    with pytest.raises(Interrupted):
        run(cut, progress=stop_after(7))  # in PGD's cell: FGSM's is stored (5 batches of 4 each)
    store = ResultStore(tmp_path / "cut" / "results.sqlite")
    stored = len(store.keys())
    store.close()
    assert 0 < stored < len(full.cells)
    resumed = run(cut)
    assert resumed.reused == stored and resumed.computed == len(full.cells) - stored and resumed.rows == full.rows
    # An index list keeps its first n entries, in its order.
    listed = parse_spec(spec_data(imagenet_like, tmp_path / "listed", index="ids.txt") | {"n": 4},
                        base_dir=imagenet_like)
    names = [f"{p.parent.name}/{p.name}" for p in folder_source(listed).files]
    assert names == ["emu/005.jpg", "dog/005.jpg", "cat/005.jpg", "emu/001.jpg"]


def test_spec_data_table_errors(imagenet_like: Path, tmp_path: Path) -> None:
    def error(**change: object) -> str:
        data = spec_data(imagenet_like, tmp_path)
        table = dict(data["data"])
        for key, value in change.items():
            if key.startswith("top_"):
                data[key[4:]] = value
            elif value is None:
                table.pop(key)
            else:
                table[key] = value
        data["data"] = table
        with pytest.raises(SpecError) as info:
            parse_spec(data, base_dir=imagenet_like)
        return str(info.value)

    assert error(center_crops=224) == ("data.center_crops: unknown key (did you mean 'center_crop'?); expected one "
                                       "of center_crop, folder, index, resize, split, workers")
    assert error(top_datset="x").startswith("datset: unknown key (did you mean 'dataset'?)")
    assert error(top_dataset="mnist") == ("dataset: give either dataset (in memory) or a [data] table (streamed), "
                                          "not both")
    assert error(folder=None) == "data.folder: required key missing (an ImageFolder directory)"
    assert error(folder="nowhere").startswith("data.folder: folder ") and "does not exist" in error(folder="nowhere")
    assert error(index="missing.txt").startswith("data.index: file ")
    assert error(split="valid") == "data.split: expected one of 'train', 'val', 'test', got 'valid'"
    assert error(top_split="test") == "data.split: give split in [data] or at the top, not both"
    assert error(resize=0) == "data.resize: expected an integer >= 1, got 0"
    assert error(resize=[1, 2, 3]) == "data.resize: expected an integer or a [height, width] pair, got [1, 2, 3]"
    assert error(center_crop=40).startswith("data.center_crop: center_crop 40 is larger than the resized image")
    assert error(workers=-1) == "data.workers: expected an integer >= 0, got -1"
    with pytest.raises(SpecError, match="split: mnist has only the splits 'train', 'test', got 'val'"):
        parse_spec({"dataset": "mnist", "split": "val", "models": [{"code": "a.b:c"}],
                    "attacks": [{"attack": "fgsm", "eps": 0.1}]})


# Peak resident memory of this process's own address space (VmHWM), in a fresh process per size.
_MEMORY_SCRIPT = """
import re, sys, torch
from torch import nn
from torch.utils.data import Dataset
from bandguard import evaluate_robustness
from bandguard.attacks import FGSM

class Noise(Dataset):  # images made on demand, as a decoder would: 3 x 96 x 96 floats, 108 KiB each
    def __init__(self, n): self.n = n
    def __len__(self): return self.n
    def __getitem__(self, i):
        return torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(i)), i % 3

def peak_kib():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1))

n, mode = int(sys.argv[1]), sys.argv[2]
net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3)).eval()
attacks = {"fgsm": FGSM(eps=(0.01, 0.1))}
evaluate_robustness(net, Noise(8), attacks=attacks, batch_size=16, scale_invariant=False)  # warm up
before = peak_kib()
if mode == "stream":
    evaluate_robustness(net, Noise(n), attacks=attacks, batch_size=16, scale_invariant=False)
else:
    data = Noise(n)
    x = torch.stack([data[i][0] for i in range(n)])
    y = torch.tensor([data[i][1] for i in range(n)])
    evaluate_robustness(net, x, y, attacks, batch_size=16, scale_invariant=False)
print((peak_kib() - before) // 1024)
"""


def _peak_mib(n: int, mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(n), mode], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return int(re.findall(r"-?\d+", out.stdout)[-1])


class Noise(Dataset):
    """Images made on demand, as a decoder makes them: ``[3, 32, 32]`` and labels ``i % 3``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)), i % 3


def _most_image_bytes_alive(data: object, y: object = None) -> int:
    """The most bytes of image batches (4-D tensors) alive at any batch of a run on ``data``."""
    most = 0
    # Tensors alive before the run (other tests' data, fixtures) are not the run's; in-memory images are.
    before = {id(t) for t in gc.get_objects() if issubclass(type(t), torch.Tensor) and t is not data}

    def count(desc: str, images: int) -> None:
        nonlocal most
        alive = [t for t in gc.get_objects()
                 if issubclass(type(t), torch.Tensor) and t.ndim == 4 and id(t) not in before]
        most = max(most, sum(t.numel() * t.element_size() for t in alive))

    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3)).eval()
    attacks = {"fgsm": FGSM(eps=(0.01, 0.1)), "pgd": PGD(eps=(0.01, 0.1), steps=1)}
    evaluate_robustness(net, data, y, attacks=attacks, batch_size=8, scale_invariant=False, progress=count)
    return most


def test_streamed_images_alive_do_not_grow_with_n() -> None:
    # Every image tensor the run holds, at every batch: a few batches of 8 (12 KiB an image)
    # whatever n; the same n in memory holds them all.
    small, large = _most_image_bytes_alive(Noise(24)), _most_image_bytes_alive(Noise(96))
    assert 0 < small <= 10 * 8 * 12288 and large == small, (small, large)
    x = torch.stack([Noise(96)[i][0] for i in range(96)])
    assert _most_image_bytes_alive(x, torch.arange(96) % 3) >= 96 * 12288


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_streamed_peak_memory_does_not_grow_with_n() -> None:
    # 96 and 384 images of 108 KiB: held in memory they take 10 and 40 MiB; streamed in batches of
    # 16 the peak is that of a few batches whatever n is (measured on 2 busy cores: +26 and +27 MiB
    # over the warm-up run's peak, and +109 MiB for the 384 images in memory).
    small, large = _peak_mib(96, "stream"), _peak_mib(384, "stream")
    in_memory = _peak_mib(384, "memory")
    assert large <= small + 6, (small, large)
    assert in_memory >= large + 30, (large, in_memory)  # the measurement sees 40 MiB of images
