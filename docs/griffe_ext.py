"""A griffe extension for bandguard's site (``extensions:`` in ``mkdocs.yml``; not part of the package).

It rewrites two habits of bandguard's (otherwise Google style) docstrings before griffe parses them:

- Parameters that share a meaning share a line::

      Args:
          h, w: image size.

  griffe would read ``h, w`` as one unknown parameter (a warning, so ``--strict`` fails); the entry
  becomes one entry per name with the same description, each typed from the signature.
- Sphinx roles (``:class:`~bandguard.attacks.results.AttackResults```) would print as text, and
  their colon would split a ``Returns:`` line into a type and a description. Each becomes what
  Sphinx shows (``~`` keeps the last name) as an optional mkdocs-autorefs cross-reference: a link to
  the object's entry where the site has one, plain code (and no warning) where it has none.
  A name without dots is looked up in the docstring's own module.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

SECTION = re.compile(r"^(\s*)(Args|Arguments|Params|Parameters|Keyword Args|Keyword Arguments|Other Parameters):\s*$")
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([\w.]+)((?:\(\))?)`")
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


def replace_roles(text: str, module: str) -> str:
    """Return ``text`` with each Sphinx role written as an optional cross-reference (inline HTML)."""

    def link(match: re.Match[str]) -> str:
        tilde, identifier, call = match.groups()
        shown = (identifier.rsplit(".", 1)[-1] if tilde else identifier) + call
        if "." not in identifier:
            identifier = f"{module}.{identifier}"
        return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'

    return ROLE.sub(link, text)


class BandguardDocstrings(griffe.Extension):
    """Split grouped parameter entries and turn Sphinx roles into cross-references, before parsing."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = split_grouped(obj.docstring.value) if "," in obj.docstring.value else obj.docstring.value
        obj.docstring.value = replace_roles(text, obj.module.path)
