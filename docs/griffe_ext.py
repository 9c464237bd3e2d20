"""A griffe extension for bandguard's site (``extensions:`` in ``mkdocs.yml``; not part of the package).

bandguard's docstrings document parameters that share a meaning on one line, Google style
otherwise::

    Args:
        h, w: image size.

griffe's Google parser reads ``h, w`` as one (unknown) parameter, so this extension rewrites such
an entry, before parsing, into one entry per name with the same description; the rendered table then
lists ``h`` and ``w``, each with its type from the signature.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

SECTION = re.compile(r"^(\s*)(Args|Arguments|Params|Parameters|Keyword Args|Keyword Arguments|Other Parameters):\s*$")
GROUPED = re.compile(r"^(\s+)(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+)(\s*\([^)]*\))?:(.*)$")


def split_grouped(text: str) -> str:
    """Return ``text`` with each grouped ``a, b: ...`` entry of an Args section written once per name."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        header = SECTION.match(line)
        if not header:
            continue
        base = len(header.group(1))
        item_indent = None
        while i < len(lines):
            line = lines[i]
            if line.strip() and len(line) - len(line.lstrip()) <= base:
                break  # the section ended
            indent = len(line) - len(line.lstrip())
            if line.strip() and item_indent is None:
                item_indent = indent
            grouped = GROUPED.match(line) if line.strip() and indent == item_indent else None
            if not grouped:
                out.append(line)
                i += 1
                continue
            j = i + 1  # the entry's continuation lines: blank or indented deeper than the entry
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
                j += 1
            while j > i + 1 and not lines[j - 1].strip():
                j -= 1
            rest = lines[i + 1 : j]
            for name in (n.strip() for n in grouped.group(2).split(",")):
                out.append(f"{grouped.group(1)}{name}{grouped.group(3) or ''}:{grouped.group(4)}")
                out.extend(rest)
            i = j
    return "\n".join(out)


class GroupedParameters(griffe.Extension):
    """Split grouped parameter entries (``h, w: ...``) before griffe parses a docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and "," in obj.docstring.value:
            obj.docstring.value = split_grouped(obj.docstring.value)
