"""A progress callback that interrupts a harness run, for the resume tests (not a test module)."""

from __future__ import annotations

from collections.abc import Callable


class Interrupted(Exception):
    """Raised by :func:`stop_after` in place of a killed run."""


def stop_after(batches: int) -> Callable[[str, int], None]:
    """A ``progress=`` callback for ``bandguard.bench.run`` raising :class:`Interrupted` at its ``batches``-th call."""
    calls = 0

    def progress(desc: str, images: int) -> None:
        nonlocal calls
        calls += 1
        if calls == batches:
            raise Interrupted

    return progress
