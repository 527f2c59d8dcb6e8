"""Pure text layout for the record viewer and ``kara cat``: display widths, clipping,
coloured pretty JSON, hex dumps and decoding of stored record bytes.

Nothing here touches the terminal, so every rule (a wide character is never cut in half,
undecodable records become hex dumps) is unit-tested without one.
"""

from __future__ import annotations

import json
import math
import pprint
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..serialization import Serializer

__all__ = [
    "Line",
    "RecordView",
    "Segment",
    "char_width",
    "clip_line",
    "decode_record",
    "display_width",
    "hexdump_lines",
    "json_lines",
    "line_text",
    "looks_like_pickle",
    "printable",
    "render_record",
]

#: ``(text, style)``; styles: ``""`` plain, ``key``, ``string``, ``number``, ``literal``,
#: ``punct``, ``note``.
Segment = tuple[str, str]
Line = list[Segment]


def char_width(ch: str) -> int:
    """Return how many terminal columns ``ch`` occupies: 0, 1 or 2 (CJK and other wide)."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Return the number of terminal columns ``text`` occupies."""
    return sum(char_width(ch) for ch in text)


def printable(text: str) -> str:
    """Return ``text`` with control characters escaped, so it cannot move the cursor."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def line_text(line: Line) -> str:
    """Return the plain text of a line, without styles."""
    return "".join(text for text, _ in line)


def clip_line(line: Line, offset: int, width: int) -> Line:
    """Return the part of ``line`` visible in columns ``[offset, offset + width)``.

    A wide character that straddles either edge is replaced by spaces for the visible
    half, so the result is exactly as wide as the visible text and never holds half a
    character. Adjacent segments of the same style are merged.
    """
    out: Line = []
    end = offset + width
    col = 0

    def emit(text: str, style: str) -> None:
        if out and out[-1][1] == style:
            out[-1] = (out[-1][0] + text, style)
        else:
            out.append((text, style))

    for text, style in line:
        for ch in text:
            w = char_width(ch)
            if w == 0:
                if offset < col <= end and out:
                    emit(ch, style)
                continue
            if col >= end:
                return out
            if col < offset:
                if col + w > offset:
                    emit(" " * (col + w - offset), style)
            elif col + w > end:
                emit(" " * (end - col), style)
            else:
                emit(ch, style)
            col += w
    return out


# -- pretty JSON with styles ---------------------------------------------------------------

_NEWLINE: Segment = ("\n", "")


def _is_json_like(value: Any, depth: int = 0) -> bool:
    if depth > 200:
        return False
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json_like(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_like(v, depth + 1) for k, v in value.items())
    return False


def _scalar(value: Any) -> Segment:
    if isinstance(value, str):
        return (json.dumps(value, ensure_ascii=False), "string")
    if value is None or isinstance(value, bool):
        return (json.dumps(value), "literal")
    return (json.dumps(value), "number")


def _tokens(value: Any, level: int, indent: int) -> Iterator[Segment]:
    if isinstance(value, (dict, list)):
        is_dict = isinstance(value, dict)
        opening, closing = ("{", "}") if is_dict else ("[", "]")
        if not value:
            yield (opening + closing, "punct")
            return
        yield (opening, "punct")
        items = list(value.items()) if is_dict else list(enumerate(value))
        pad = " " * (indent * (level + 1))
        for i, (k, v) in enumerate(items):
            yield _NEWLINE
            yield (pad, "")
            if is_dict:
                yield (json.dumps(k, ensure_ascii=False), "key")
                yield (": ", "punct")
            yield from _tokens(v, level + 1, indent)
            if i < len(items) - 1:
                yield (",", "punct")
        yield _NEWLINE
        yield (" " * (indent * level), "")
        yield (closing, "punct")
    else:
        yield _scalar(value)


def json_lines(value: Any, indent: int = 4) -> list[Line]:
    """Return ``value`` (JSON-compatible) pretty-printed as styled lines.

    The text is that of ``json.dumps(value, indent=indent, ensure_ascii=False)``: CJK
    text stays readable and control characters are escaped.
    """
    lines: list[Line] = [[]]
    for segment in _tokens(value, 0, indent):
        if segment is _NEWLINE:
            lines.append([])
        elif segment[0]:
            lines[-1].append(segment)
    return lines


def hexdump_lines(data: bytes, width: int = 16) -> list[str]:
    """Return ``data`` as ``hexdump -C`` style lines: offset, hex bytes, ASCII column."""
    lines = []
    for start in range(0, len(data), width):
        chunk = data[start : start + width]
        halves = [chunk[:8].hex(" "), chunk[8:].hex(" ")]
        hex_part = "  ".join(h for h in halves if h)
        ascii_part = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {hex_part:<{width * 3 + 1}} |{ascii_part}|")
    lines.append(f"{len(data):08x}")
    return lines


# -- decoding stored records -----------------------------------------------------------


def looks_like_pickle(raw: bytes) -> bool:
    """Return whether ``raw`` looks like a pickle (protocol 2+ header, STOP at the end)."""
    return len(raw) >= 3 and raw[0] == 0x80 and raw[1] <= 5 and raw.endswith(b".")


@dataclass
class RecordView:
    """A record ready to show: what it is, its styled lines, and a note for the header."""

    kind: str
    lines: list[Line]
    note: str = ""


def decode_record(raw: bytes, serializer: Serializer) -> tuple[Any, str | None]:
    """Decode stored bytes; return ``(value, None)`` or ``(None, reason)`` when it fails."""
    try:
        return serializer.deserialize(raw), None
    except Exception as exc:  # noqa: BLE001 - any decoder error means "show the bytes"
        return None, f"{type(exc).__name__}: {exc}"


def render_record(raw: bytes, serializer: Serializer) -> RecordView:
    """Decode ``raw`` with ``serializer`` and lay it out for the viewer.

    JSON-like values become coloured pretty JSON, other Python objects ``pprint`` text,
    bytes (and records the serializer cannot decode) a hex dump with a note saying why.
    """
    value, error = decode_record(raw, serializer)
    if error is not None:
        name = serializer.name or type(serializer).__name__
        hint = ""
        if looks_like_pickle(raw) and serializer.name != "pickle":
            hint = "; looks like a pickle: try --serialization pickle (only for data you trust)"
        note = f"cannot decode as {name}{hint}; {len(raw)} bytes shown as hex ({printable(error)[:120]})"
        return RecordView("hex", _plain(hexdump_lines(raw)), note)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return RecordView("hex", _plain(hexdump_lines(data)), f"{len(data)} bytes")
    if _is_json_like(value):
        return RecordView("json", json_lines(value))
    text = pprint.pformat(value, width=100, sort_dicts=False)
    return RecordView("python", _plain(printable(line) for line in text.splitlines()), type(value).__name__)


def _plain(lines: Iterator[str] | list[str]) -> list[Line]:
    return [[(line, "")] if line else [] for line in lines]
