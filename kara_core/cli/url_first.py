"""Command groups that also take the store URL first, in kara-storage 2.x's order: ``GROUP URL ACTION ...``."""

from __future__ import annotations

import click


class URLFirstGroup(click.Group):
    """A group whose subcommands take a store URL first, reachable both ways.

    ``kara obj save URL NS KEY PATH`` is the canonical form; kara-storage 2.x wrote
    ``kara_storage obj URL save NS KEY PATH``. When the first argument is a URL and the
    second names a subcommand, the two are swapped before parsing.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Rewrite ``URL ACTION ...`` into ``ACTION URL ...``."""
        if len(args) >= 2 and "://" in args[0] and args[1] in self.commands:
            args = [args[1], args[0], *args[2:]]
        return super().parse_args(ctx, args)
