"""kara-obstore: S3 and Azure Blob stores through obstore (the Rust ``object_store`` client).

``KaraStorage("s3://bucket/prefix", endpoint=..., access_key_id=..., secret_access_key=...)``
or ``KaraStorage("az://container/prefix", account_name=..., account_key=...)``: once
installed, kara-obstore opens ``s3://`` and ``az://`` (``azure://``, ``abfs://``) URLs,
ahead of kara-fsspec's fallback. :func:`open_obstore` opens a URL through this plugin
whatever else is installed; ``KARA_PLUGIN_S3=fsspec`` (``KARA_PLUGIN_AZ=...``) picks
another plugin for a scheme. Importing this package is cheap: obstore is imported when
a store is opened.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ObstoreBackend", "ObstoreOptions", "open_obstore"]


def __getattr__(name: str) -> Any:
    if name in ("ObstoreBackend", "open_obstore"):
        from . import backend

        return getattr(backend, name)
    if name == "ObstoreOptions":
        from .options import ObstoreOptions

        return ObstoreOptions
    raise AttributeError(name)
