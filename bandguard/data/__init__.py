"""Image data sets as compact uint8 tensors: MNIST, CIFAR-10 and any ImageFolder directory.

``load_dataset(name, split)`` returns an :class:`ImageDataset` holding every image of one split
as a uint8 tensor ``[N, C, H, W]`` and the labels as int64 ``[N]``; it hands out float images in
``[0, 1]`` one at a time, batched, or all at once (:meth:`ImageDataset.tensors`).
:func:`make_loader` batches by indexing the uint8 tensor, with no per-image collation.

The modules, each read top to bottom:

- :mod:`~bandguard.data.dataset`: the container and the loader.
- :mod:`~bandguard.data.sources`: where a data set comes from (``root``, ``$BANDGUARD_DATA``,
  a torchvision download into the user cache, the bundled MNIST sample).
- :mod:`~bandguard.data.mnist`: the classic ``mnist.pkl.gz``, through an unpickler that builds
  numpy arrays and nothing else.
- :mod:`~bandguard.data.folders`: ImageFolder directories and tarballs of them.
- :mod:`~bandguard.data.cache`: the decoded cache and ``SHA256SUMS`` checksums.
- :mod:`~bandguard.data.stream`: streaming: :class:`FolderSource` reads an ImageFolder image by
  image (resize, centre crop, ``val`` split, index list), and :func:`as_samples` turns tensors, a
  ``Dataset`` or a ``DataLoader`` into the batches the benchmark reads, so ImageNet-size sets never
  sit in memory whole.

Corrupt or truncated archives, a wrong checksum, a refused pickle global, a bad split or an
unknown name raise ``ValueError`` naming the file or argument; nothing returns part of a data set.
"""

from __future__ import annotations

from bandguard.data.dataset import ImageDataset, make_loader
from bandguard.data.sources import SampleDataWarning, load_dataset
from bandguard.data.stream import FolderSource, as_samples

__all__ = ["FolderSource", "ImageDataset", "SampleDataWarning", "as_samples", "load_dataset", "make_loader"]
