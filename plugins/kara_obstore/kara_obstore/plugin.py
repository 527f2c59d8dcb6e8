"""Entry point of kara-obstore: registers s3:// and az:// (cheap to import: no obstore, no
options model; the options load when a store of these schemes is opened)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kara_core import hookimpl

if TYPE_CHECKING:
    from kara_core.url import StoreURL

    from .backend import ObstoreBackend
    from .options import ObstoreOptions

#: Scheme -> ``kara plugins`` summary. ``azure`` and ``abfs`` are obstore's other names for Azure Blob.
SCHEMES = {
    "s3": "S3 and S3-compatible stores through obstore: s3://bucket/prefix (options: obstore's S3 config)",
    "az": "Azure Blob through obstore: az://container/prefix (options: obstore's Azure config)",
    "azure": "Azure Blob through obstore: azure://container/prefix",
    "abfs": "Azure Blob through obstore: abfs://container/prefix",
}


def _factory(url: StoreURL, options: ObstoreOptions) -> ObstoreBackend:
    from .backend import ObstoreBackend

    return ObstoreBackend.from_url(url, options)


@hookimpl
def kara_register_backends(register: Callable[..., None]) -> None:
    """Register the object stores obstore serves and kara-obstore is tested on.

    Registered schemes win over kara-fsspec's fallback (``"*"``), so these URLs open
    here when both plugins are installed; ``KARA_PLUGIN_<SCHEME>`` chooses otherwise.
    """
    for scheme, summary in SCHEMES.items():
        register(scheme, _factory, "kara_obstore.options:ObstoreOptions", summary)
