"""Test doubles built on the file backend, for kara's tests and plugins' own.

:class:`NoLocalFilesBackend` is a folder that kara must treat as a remote store: it
reports no local paths, so saves, loads, gc and readers take the code paths of object
stores (downloads to staging files, packs of small files, first-sighting ages, windowed
reads) while the bytes stay on the local disk where a test can damage or count them.

:func:`run_with_private_mount` runs a command with a file system of its own mounted
(a tmpfs of a few megabytes is a disk that fills up; a ramfs refuses ``O_DIRECT``),
without root and without touching the host's mounts.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from kara_core.backend import Capabilities

from .backend import FileBackend

__all__ = ["NoLocalFilesBackend", "private_mounts_unavailable", "run_with_private_mount"]

_MOUNT_THEN_RUN = 'mount -t "$1" -o "$2" none "$3" && shift 3 && exec "$@"'


def run_with_private_mount(
    mount: str | os.PathLike[str], fstype: str, options: str, *command: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with a new ``fstype`` file system mounted at ``mount`` (a folder).

    The mount lives in a private user and mount namespace (``unshare --user
    --map-root-user --mount``): no root is needed, and it goes away with the command.
    ``options`` go to ``mount -o`` (``"size=3m"`` makes a tmpfs a 3 MiB disk that fills
    up; ``"defaults"`` for none). Returns the finished process, output captured as text.
    """
    unshare = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _MOUNT_THEN_RUN, "sh"]
    return subprocess.run(
        [*unshare, fstype, options, os.fspath(mount), *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def private_mounts_unavailable(mount: str | os.PathLike[str], fstype: str = "tmpfs") -> str | None:
    """Why :func:`run_with_private_mount` cannot run here (None when it can)."""
    if shutil.which("unshare") is None:
        return "util-linux's unshare is not installed"
    probe = run_with_private_mount(mount, fstype, "defaults", "true", timeout=60)
    if probe.returncode != 0:
        return (
            "this host does not let a user mount a file system in a private namespace (user namespaces "
            "off: kernel.unprivileged_userns_clone, user.max_user_namespaces): " + probe.stderr.strip()
        )
    return None


class NoLocalFilesBackend(FileBackend):
    """The file backend seen as a store without local files.

    Its capabilities are the defaults with ``local_path=False`` (no server-side copy, no
    parallel or streamed reads); a subclass sets ``capabilities`` to add those, and
    overrides ``read`` / ``open_read`` / ``open_range`` to count or damage what is read.
    """

    capabilities = Capabilities(local_path=False)

    def local_path(self, path: str) -> str | None:
        """None: nothing of this store is to be opened as a local file."""
        return None
