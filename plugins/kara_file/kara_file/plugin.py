"""Entry point of kara-file: registers the ``file`` scheme (cheap to import)."""

from __future__ import annotations

from collections.abc import Callable

from kara_core import hookimpl


def _factory(url, options):  # type: ignore[no-untyped-def]
    # The backend, and the local-disk I/O under it, load when a store is opened.
    from .backend import FileBackend

    return FileBackend.from_url(url, options)


@hookimpl
def kara_register_backends(register: Callable[..., None]) -> None:
    # The options model by name: imported when a file:// store is opened.
    register(
        "file",
        _factory,
        "kara_file.options:FileOptions",
        "local or shared filesystem: file:///abs/path or file://relative/path",
    )
