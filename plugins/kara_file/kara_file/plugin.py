"""Entry point of kara-file: registers the ``file`` scheme (cheap to import)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kara_core import hookimpl


def _open_plain(url: str, location: str, options: dict[str, Any]) -> Any:
    # The fast path of open_backend: no pydantic when the options are plain.
    from .backend import FileBackend, plain_file_options

    values = plain_file_options(options)
    if values is None:
        return None
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
