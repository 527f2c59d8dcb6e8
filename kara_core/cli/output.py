"""How kara commands print: quiet mode, progress bars on terminals only, tables, JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click

from .options import QUIET_META
from .render import display_width, printable

__all__ = ["human_size", "info", "is_quiet", "print_json", "print_table", "progress_bar", "show_progress"]


def is_quiet(ctx: click.Context | None = None) -> bool:
    """Return whether ``--quiet`` was given anywhere on the command line."""
    ctx = ctx or click.get_current_context()
    return bool(ctx.meta.get(QUIET_META))


def show_progress(ctx: click.Context | None = None) -> bool:
    """Progress bars only on a terminal, and never with ``--quiet``."""
    return not is_quiet(ctx) and sys.stderr.isatty()


def progress_bar(total: int | None, desc: str, unit: str = "it") -> Any:
    """Return a tqdm bar on stderr, disabled when progress is not shown."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not show_progress(), file=sys.stderr, dynamic_ncols=True)


def info(message: str) -> None:
    """Print an informational message on stderr unless ``--quiet``."""
    if not is_quiet():
        click.echo(message, err=True)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def human_size(n: int | None) -> str:
    """Return a byte count as ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    if n is None:
        return "-"
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    size, unit = float(n), 0
    while size >= 1024 and unit < len(units) - 1:
        size /= 1024
        unit += 1
    return f"{n} B" if unit == 0 else f"{size:.1f} {units[unit]}"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows under headers in aligned columns (aligned by display width, so CJK fits)."""
    cells = [[printable(str(c)) for c in row] for row in rows]
    table = [list(headers), *cells]
    widths = [max(display_width(row[i]) for row in table) for i in range(len(headers))]
    for row in table:
        padded = [cell + " " * (widths[i] - display_width(cell)) for i, cell in enumerate(row)]
        click.echo("  ".join(padded).rstrip())
