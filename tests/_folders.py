"""ImageFolder trees of small mixed-size JPEGs shared by the streaming tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

SIZES = ((40, 37), (50, 64), (37, 45), (64, 48))  # (height, width): no two classes alike
CLASSES = ("cat", "dog", "emu")


def write_folder(root: Path, per_class: int = 8, split: str | None = "val", suffix: str = ".jpg",
                 sizes: tuple[tuple[int, int], ...] = SIZES, random_tint: bool = False) -> Path:
    """``root/[split/]<class>/NNN<suffix>``: noise with the class's channel brightened, sizes cycling
    through ``sizes``. The tint is 150, or with ``random_tint`` drawn in [40, 160) per image, so a
    classifier's robustness varies from image to image. Returns the folder holding the classes."""
    folder = root / split if split else root
    g = torch.Generator().manual_seed(0)
    for k, cls in enumerate(CLASSES):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = sizes[(i + k) % len(sizes)]
            img = torch.randint(0, 96, (h, w, 3), generator=g, dtype=torch.uint8)
            img[..., k] += int(torch.randint(40, 160, (), generator=g)) if random_tint else 150
            Image.fromarray(img.numpy()).save(folder / cls / f"{i:03d}{suffix}", quality=95)
    return folder
