"""The ``kara`` command line (also installed as ``kara_storage`` for 2.x's commands).

Importing this package builds the click group :data:`cli` with the built-in commands;
plugins add theirs through the ``kara_register_commands`` hook when a command list is
needed. Heavy libraries are imported inside commands, never here.
"""

from __future__ import annotations

from . import browse, importing, objects, plugins_info, rows, verify
from .app import cli, main

__all__ = ["browse", "cli", "importing", "main", "objects", "plugins_info", "rows", "verify"]
