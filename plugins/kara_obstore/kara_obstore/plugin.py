"""Entry point of kara-obstore: registers s3:// and az:// (cheap to import: no obstore import)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kara_core import hookimpl

from .options import SCHEMES, ObstoreOptions

if TYPE_CHECKING:
    from kara_core.url import StoreURL

    from .backend import ObstoreBackend


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
        register(scheme, _factory, ObstoreOptions, summary)
