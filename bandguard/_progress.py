"""The one progress mechanism: tqdm bars, on a terminal only unless asked, and run-time estimates.

Every long computation of the package (the benchmark harness's cells, training epochs, the
Fourier heat map, imagecorruptions' images) reports through :func:`bar` or :class:`Bars`, so one
rule decides whether a bar is drawn:

- ``progress=None``: on a terminal only (stderr is a TTY), what the command line uses;
- ``progress=True``: always (a notebook, a log file you want to watch);
- ``progress=False``: never.

Estimates (:func:`announce_estimate`) go to the ``bandguard.progress`` logger, which the command
line shows; library code never prints.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["LONG_RUN_SECONDS", "Bars", "announce_estimate", "bar", "enabled", "format_seconds"]

logger = logging.getLogger("bandguard.progress")

LONG_RUN_SECONDS = 600.0
"""Estimated run times above this (10 minutes) are announced as a warning, not as information."""


def enabled(progress: bool | None, stream: Any = None) -> bool:
    """Whether a bar is drawn: ``progress`` itself, or for ``None`` whether ``stream`` is a terminal.

    Args:
        progress: ``True`` (always), ``False`` (never) or ``None`` (on a terminal only).
        stream: where the bar goes; default ``sys.stderr``.

    Returns:
        ``True`` if bars are shown.
    """
    if progress is not None:
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None, got {type(progress).__name__} {progress!r}")
        return progress
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def bar(total: int | None, desc: str, *, progress: bool | None = None, unit: str = "img",
        leave: bool = False, stream: Any = None) -> Any:
    """A tqdm bar over ``total`` items (drawn or not by :func:`enabled`).

    Args:
        total: the number of items (``None``: unknown).
        desc: the label in front of the bar.
        progress: see :func:`enabled`.
        unit: what one item is (``"img"``, ``"batch"``).
        leave: keep the finished bar on screen.
        stream: where the bar goes; default ``sys.stderr``.

    Returns:
        A ``tqdm`` instance (a disabled one still accepts ``update``, ``set_postfix`` and ``close``).
    """
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=stream,
                disable=not enabled(progress, stream))


class Bars:
    """A harness progress callback ``(description, images_done)``: one bar per description.

    A new description closes the previous bar and opens the next (one per benchmark cell).

    Args:
        total: images per bar (``None``: unknown).
        progress: see :func:`enabled`.
        stream: where the bars go; default ``sys.stderr``.
    """

    def __init__(self, total: int | None, progress: bool | None = None, stream: Any = None) -> None:
        self.total = total
        self.shown = enabled(progress, stream)
        self.stream = stream
        self.desc = ""
        self._bar: Any = None

    def __call__(self, desc: str, images: int) -> None:
        if not self.shown:
            return
        if desc != self.desc or self._bar is None:
            self.close()
            self.desc = desc
            self._bar = bar(self.total, desc, progress=True, stream=self.stream)
        self._bar.update(images)

    def close(self) -> None:
        """Close the open bar, if any."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_seconds(seconds: float) -> str:
    """A duration for people: ``"40 s"``, ``"about 3 min"``, ``"about 2.5 h"`` (rounded up).

    Args:
        seconds: the duration, >= 0.

    Returns:
        The text.
    """
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))} s"
    if seconds < 3600:
        return f"about {math.ceil(seconds / 60)} min"
    return f"about {math.ceil(seconds / 360) / 10:g} h"


def announce_estimate(seconds: float, what: str, *, hint: str = "") -> str:
    """Log how long ``what`` should take, as a warning above :data:`LONG_RUN_SECONDS`.

    Args:
        seconds: the estimate (an upper bound from declared forward costs).
        what: the work, e.g. ``"mnist_cnn: 27 cells on 100 images"``.
        hint: how to make it shorter, added to the warning.

    Returns:
        The message logged.
    """
    text = f"estimated time for {what}: {format_seconds(seconds)} (an upper bound from forward costs)"
    if seconds > LONG_RUN_SECONDS:
        text += "; this is long" + (f": {hint}" if hint else "")
        logger.warning(text)
    else:
        logger.info(text)
    return text
