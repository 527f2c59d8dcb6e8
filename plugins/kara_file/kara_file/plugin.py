"""Entry point of kara-file: registers the ``file`` scheme (cheap to import)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kara_core import hookimpl

#: FileOptions' fields and defaults (kara_file.options; tests/fuzz checks they agree).
_DEFAULTS = {"fsync": True, "direct_io": "auto"}


def plain_file_options(options: dict[str, Any]) -> dict[str, Any] | None:
    """What :class:`~kara_file.options.FileOptions` makes of ``options``, when they are plain.

    Plain: only known names, each with a value the model keeps as it is (``fsync`` a
    bool, ``direct_io`` a bool or ``"auto"``). Anything else returns None: the model then
    converts or refuses it, with its own error.
    """
    values = dict(_DEFAULTS)
    for name, value in options.items():
        kind = type(value)
        if not (kind is bool or (name == "direct_io" and kind is str and value == "auto")) or name not in values:
            return None
        values[name] = value
    return values


def _open_plain(url: str, location: str, options: dict[str, Any]) -> Any:
    # The fast path of open_backend: no pydantic when the options are plain.
    values = plain_file_options(options)
    if values is None:
        return None
    from .backend import FileBackend

    return FileBackend.from_plain(url, location, options, values)


def _factory(url, options):  # type: ignore[no-untyped-def]
    # The backend, and the local-disk I/O under it, load when a store is opened.
    from .backend import FileBackend

    return FileBackend.from_url(url, options)


@hookimpl
def kara_register_backends(register: Callable[..., None]) -> None:
    # The options model by name: imported when a file:// store is opened with options
    # that are not plain (open_plain handles the others without it).
    register(
        "file",
        _factory,
        "kara_file.options:FileOptions",
        "local or shared filesystem: file:///abs/path or file://relative/path",
        open_plain=_open_plain,
    )
