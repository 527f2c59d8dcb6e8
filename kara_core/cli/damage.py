"""Entries of a store that cannot be read: commands that walk a store report and go on.

One odd entry (a ``meta.json`` that is not JSON, a listed version whose name kara
refuses, a manifest that does not parse) must not hide the rest of the store: ``ls``,
``info`` and ``verify`` report it on stderr as damaged, list everything else, and exit
with :data:`EXIT_DAMAGED` at the end. Failures of the store itself (network,
permissions) still stop the command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..errors import BlobIntegrityError, ConfigurationError, CorruptDatasetError, NotFoundError, UnsafePathError

__all__ = ["DAMAGE", "EXIT_DAMAGED", "DamageReport"]

#: What a damaged entry raises (as opposed to a store that cannot be reached).
DAMAGE = (CorruptDatasetError, ConfigurationError, UnsafePathError, NotFoundError, BlobIntegrityError)
#: Exit status when the command finished but found damaged entries (as ``kara verify``).
EXIT_DAMAGED = 3


class DamageReport:
    """Collects the damaged entries a command met; each one is reported when found."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    @contextmanager
    def entry(self, what: str) -> Iterator[None]:
        """Run the block for entry ``what``; a damage error is reported, not raised."""
        try:
            yield
        except DAMAGE as exc:
            self.entries.append({"entry": what, "error": str(exc)})
            click.echo(f"kara: damaged: {what}: {exc}", err=True)

    def finish(self) -> None:
        """Exit with :data:`EXIT_DAMAGED` if anything was damaged."""
        if self.entries:
            click.echo(f"kara: {len(self.entries)} damaged entr{'y' if len(self.entries) == 1 else 'ies'}", err=True)
            click.get_current_context().exit(EXIT_DAMAGED)
