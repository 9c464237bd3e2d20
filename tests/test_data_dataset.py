"""bandguard.data.dataset: the uint8 container and its loader, on the bundled MNIST sample."""

from __future__ import annotations

import pytest
import torch

from bandguard.data import ImageDataset, make_loader


def _tiny(n: int = 5) -> ImageDataset:
    images = torch.arange(n * 4, dtype=torch.uint8).reshape(n, 1, 2, 2)
    return ImageDataset(images, torch.arange(n) % 2, ("even", "odd"), "tiny", "train", "memory")


def test_item_batch_and_tensors_are_the_bytes_over_255(bundled_sample: ImageDataset) -> None:
    x, y = bundled_sample[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    assert torch.equal(x, bundled_sample.images[3].float() / 255) and y == int(bundled_sample.labels[3])
    xb, yb = bundled_sample.__getitems__([3, 0, 7])
    assert xb.shape == (3, 1, 28, 28) and torch.equal(xb[0], x) and yb.tolist()[0] == y
    xs, ys = bundled_sample.tensors(10, dtype=torch.float64)
    assert xs.shape == (10, 1, 28, 28) and xs.dtype == torch.float64 and ys.shape == (10,)
    assert torch.equal(xs[3].float(), x) and torch.equal(ys, bundled_sample.labels[:10])
    ys[0] = 99  # a copy: the data set is untouched
    assert int(bundled_sample.labels[0]) != 99
    assert bundled_sample.tensors()[0].shape[0] == len(bundled_sample)
    assert bundled_sample[-1][1] == int(bundled_sample.labels[-1])


def test_tensors_follow_the_device(device: torch.device) -> None:
    x, y = _tiny().tensors(3, device=device)
    assert x.device.type == y.device.type == device.type
    assert x.flatten().tolist() == pytest.approx([v / 255 for v in range(12)])


def test_shape_classes_subset_and_repr() -> None:
    ds = _tiny()
    assert (ds.shape, ds.num_classes, len(ds), ds.source) == ((1, 2, 2), 2, 5, "memory")
    sub = ds.subset([4, 1])
    assert sub.labels.tolist() == [0, 1] and torch.equal(sub.images[0], ds.images[4])
    assert (sub.classes, sub.name, sub.split, sub.source) == (ds.classes, "tiny", "train", "memory")
    assert len(ds.subset(slice(1, 4))) == 3
    assert repr(ds) == "ImageDataset(name='tiny', split='train', n=5, shape=(1, 2, 2), num_classes=2)"


def test_make_loader_batches_in_order() -> None:
    ds = _tiny(7)
    batches = list(make_loader(ds, 3))
    assert [y.tolist() for _, y in batches] == [[0, 1, 0], [1, 0, 1], [0]]
    assert torch.equal(batches[1][0], ds.images[3:6].float() / 255)
    assert [len(y) for _, y in make_loader(ds, 3, drop_last=True)] == [3, 3]


def test_make_loader_seeded_shuffle(bundled_sample: ImageDataset) -> None:
    def order(seed: int) -> torch.Tensor:
        return torch.cat([y for _, y in make_loader(bundled_sample, 128, shuffle=True, seed=seed)])

    first, again, other = order(0), order(0), order(1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(first.sort().values, bundled_sample.labels.sort().values)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"num_workers": -1}, ValueError, "num_workers must be >= 0"),
        ({"batch_size": 1.5}, TypeError, "batch_size must be an int"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
    ],
)
def test_make_loader_errors(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_loader(_tiny(), **kwargs)
    with pytest.raises(TypeError, match="dataset must be an ImageDataset, got tuple"):
        make_loader((torch.zeros(1), torch.zeros(1)))  # type: ignore[arg-type]


def test_tensors_errors() -> None:
    ds = _tiny()
    with pytest.raises(ValueError, match=r"n must be <= 5 \(the train split's size\)"):
        ds.tensors(6)
    with pytest.raises(ValueError, match="n must be >= 1"):
        ds.tensors(0)
    with pytest.raises(ValueError, match="dtype must be a floating"):
        ds.tensors(4, dtype=torch.int32)


def test_dataset_validates_its_tensors() -> None:
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"images must be a uint8 tensor \[N, C, H, W\], got Tensor of shape"):
        ImageDataset(images.float(), labels, ("a",), "x", "test")
    with pytest.raises(ValueError, match="images must be a uint8 tensor"):
        ImageDataset(images[0], labels, ("a",), "x", "test")
    with pytest.raises(ValueError, match="labels must be an int64 tensor"):
        ImageDataset(images, labels.int(), ("a",), "x", "test")
    with pytest.raises(ValueError, match="got 4 images but 3 labels"):
        ImageDataset(images, labels[:3], ("a",), "x", "test")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\) for 1 classes, got \[1, 1\]"):
        ImageDataset(images, labels + 1, ("a",), "x", "test")
