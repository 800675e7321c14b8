"""Rows as the text of PostgreSQL's ``COPY ... FROM STDIN`` (text format).

On PostgreSQL the sync's writing process waits on the server for most of a page, and
formatting ~8 child rows per customer for ``COPY`` (psycopg's ``write_row``) was most of
what it did itself: ~0.7 of its 1 CPU-s per 20,000 customers. The prefetch process has
time to spare, so it formats the child rows as text and the writer only puts each row's
customer id in front (see ``benchmarks/``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

NULL = "\\N"
# Backslash, tab, newline and carriage return are the text format's specials.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_value(value: Any) -> str:
    """One value in COPY's text format: ``None`` is NULL, booleans are t/f, floats keep
    every digit (``repr``), strings are escaped."""
    kind = type(value)
    if kind is str:
        return escape(value)
    if value is None:
        return NULL
    if kind is bool:
        return "t" if value else "f"
    if kind is float:
        return repr(value)
    if kind is int:
        return str(value)
    raise TypeError(f"cannot write a {kind.__name__} to COPY text: {value!r:.40}")


def escape(text: str) -> str:
    # Most values have none of the specials: looking for them first, rather than
    # translating every character, took a child row from 3.9 to 1.4 µs.
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def unescape(text: str) -> str:
    """A text value of a COPY line as it was before ``escape``."""
    if "\\" not in text:
        return text
    parts, at = [], 0
    while (found := text.find("\\", at)) != -1:
        parts.append(text[at:found])
        parts.append(_UNESCAPES.get(text[found + 1:found + 2], text[found + 1:found + 2]))
        at = found + 2
    parts.append(text[at:])
    return "".join(parts)


def copy_line(values: Sequence[Any]) -> str:
    """A row's values, tab-separated, without the line's end."""
    return "\t".join([copy_value(value) for value in values])


def in_pieces(lines: Iterable[str], lines_per_piece: int = 250) -> Iterator[str]:
    """Lines joined a few hundred at a time, for ``COPY`` to send piece by piece: a whole
    page's text at once was ~5 MiB more per page being written (and the sync writes two
    at a time on PostgreSQL)."""
    piece: list[str] = []
    for line in lines:
        piece.append(line)
        if len(piece) == lines_per_piece:
            yield "".join(piece)
            piece = []
    if piece:
        yield "".join(piece)
