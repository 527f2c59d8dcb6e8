"""gcp-storage-emulator (PyPI) on 127.0.0.1: Google Cloud Storage's JSON API for gcsfs.

The emulator speaks the JSON and upload APIs over plain HTTP, which is all gcsfs's
``GCSFileSystem`` uses. gcsfs's experimental zonal/hierarchical-namespace class (the
default since gcsfs 2025.x, chosen when ``gcsfs`` is imported) first asks the Storage
Control API over gRPC for each bucket's type, which the emulator does not serve (every
bucket then waits 60 s for that answer): :func:`disable_gcsfs_extensions` must run before
gcsfs is imported, and :class:`GCSTestServer` calls it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

__all__ = ["GCSFS_EXTENSIONS", "GCSEmulatorError", "disable_gcsfs_extensions", "start_gcs_emulator"]

#: The environment variable gcsfs reads at import to choose its experimental class.
GCSFS_EXTENSIONS = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"


class GCSEmulatorError(RuntimeError):
    """gcp-storage-emulator is not installed, did not start, or gcsfs cannot reach it."""


def disable_gcsfs_extensions() -> None:
    """Make gcsfs use its plain JSON-API filesystem (see the module docstring).

    Raises :class:`GCSEmulatorError` when gcsfs was already imported with the extensions
    on: the choice is made once, at import.
    """
    os.environ[GCSFS_EXTENSIONS] = "false"
    gcsfs = sys.modules.get("gcsfs")
    if gcsfs is not None and gcsfs.GCSFileSystem.__name__ != "GCSFileSystem":
        raise GCSEmulatorError(
            f"gcsfs was imported with {GCSFS_EXTENSIONS} on, so it asks a gRPC service the emulator "
            f"does not have: set {GCSFS_EXTENSIONS}=false before importing gcsfs"
        )


def start_gcs_emulator(host: str = "127.0.0.1", port: int = 0) -> tuple[Any, int]:
    """Start the emulator in memory in a thread of this process; return the server and its port."""
    try:
        from gcp_storage_emulator.server import create_server
    except ImportError:
        raise GCSEmulatorError(
            "gcp-storage-emulator is not installed: pip install 'kara-fsspec[test]' (scripts/test does)"
        ) from None
    # One line per request at INFO would drown test and benchmark output.
    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    server = create_server(host, port, in_memory=True)
    server.start()
    httpd = server._api._httpd  # the emulator keeps its http.server private; the port lives there
    if httpd is None:
        raise GCSEmulatorError("gcp-storage-emulator did not start")
    return server, int(httpd.server_address[1])
