"""Tables from a header and rows of cells: aligned plain text for the terminal, Markdown for files.

Numbers align right; ``align`` names the leading columns that differ, one letter each (``l`` or
``r``), e.g. ``"l"`` for a first column of names.
"""

from __future__ import annotations

from collections.abc import Sequence

Cells = Sequence[str]


def _sides(head: Cells, align: str) -> str:
    return align.ljust(len(head), "r")


def text_table(head: Cells, rows: Sequence[Cells], align: str = "") -> list[str]:
    """The header line, then one line per row; columns padded to their widest cell, 2 spaces apart."""
    widths = [max([len(head[i]), *(len(r[i]) for r in rows)]) for i in range(len(head))]
    sides = _sides(head, align)

    def line(cells: Cells) -> str:
        return "  ".join(
            c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, sides)
        )

    return [line(head), *(line(r) for r in rows)]


def markdown_table(head: Cells, rows: Sequence[Cells], align: str = "") -> list[str]:
    """A Markdown (GitHub) table's lines: header, alignment row, one line per row."""

    def line(cells: Cells) -> str:
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("---" if a == "l" else "---:" for a in _sides(head, align)) + "|"
    return [line(head), rule, *(line(r) for r in rows)]
