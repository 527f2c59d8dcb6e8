"""The options of ``file://`` stores (a pydantic model: cheap to import, no I/O code)."""

from __future__ import annotations

from typing import Literal

from kara_core.url import BackendOptions

__all__ = ["FileOptions"]


class FileOptions(BackendOptions):
    """Options of ``file://`` stores.

    ``fsync``: make flushes, closes and puts durable with fsync (default True; turn it
    off only for scratch stores on tmpfs).

    ``direct_io``: how objects of 8 MiB and more are written (see
    :func:`kara_core.localdisk.write_file`). ``"auto"`` (default): through the page
    cache while the kernel provides cache pages cheaply, else with O_DIRECT; ``True``:
    always O_DIRECT (stored blobs are cold data; nothing of them is kept in memory);
    ``False``: always through the page cache. ``KARA_DIRECT_IO`` overrides it for every
    store.
    """

    fsync: bool = True
    direct_io: bool | Literal["auto"] = "auto"
