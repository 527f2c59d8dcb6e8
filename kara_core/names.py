"""Namespace, key and version names, and how listings turn stored paths back into names.

kara-storage 2.x joined names into paths with ``/`` (``row/<namespace>/<key>/...``), so
a namespace or key containing ``/`` (``"team/proj"``) made nested folders, and such
stores exist. kara accepts them: a namespace or key is one or more ``/``-separated
components. What would escape the store or be ambiguous is refused: empty components
(``a//b``, a leading or trailing ``/``), ``.`` and ``..``, and NUL. A backslash is a
plain character (stores are POSIX folders or object keys, where it never separates).
A version is a single component.

The stored path of ``("team", "proj/data")`` is that of ``("team/proj", "data")``: they
are the same dataset. Listings report it once, with the last component as the key and
the rest as the namespace (:func:`split_names`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .backend import Backend

__all__ = ["NamedEntries", "check_name", "check_nested_name", "split_names"]

_RULE = "components separated by '/' that are not empty, '.' or '..', and no NUL"


def check_nested_name(what: str, value: object) -> str:
    """Return ``value`` if it is a valid namespace or key, else raise ConfigurationError."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string, got {value!r}")
    if "\x00" in value or any(part in ("", ".", "..") for part in value.split("/")):
        raise ConfigurationError(f"invalid {what} {value!r}: use {_RULE}")
    return value


def check_name(what: str, value: object) -> str:
    """Return ``value`` if it is a valid single-component name (a version), else raise."""
    name = check_nested_name(what, value)
    if "/" in name:
        raise ConfigurationError(f"invalid {what} {name!r}: it must not contain '/'")
    return name


def split_names(folders: Iterable[str], inner: Callable[[str], Collection[str]]) -> list[tuple[str, str]]:
    """Turn the folders holding a ``meta.json`` (``"team/proj/data"``) into (namespace, key) pairs.

    Each folder needs at least two components; the last one is the key. A folder nested
    inside another listed folder is skipped when the first component below it is one of
    that folder's own sub-folders, ``inner(parent)`` (a version, ``vers``, ``data``...):
    such a ``meta.json`` belongs to the parent's contents, not to a dataset of its own.
    Returns sorted, distinct pairs.
    """
    listed = {f for f in folders if f.count("/") >= 1}
    names = set()
    for folder in listed:
        parts = folder.split("/")
        owned = False
        for cut in range(2, len(parts)):
            parent = "/".join(parts[:cut])
            if parent in listed and parts[cut] in inner(parent):
                owned = True
                break
        if not owned:
            names.add(("/".join(parts[:-1]), parts[-1]))
    return sorted(names)


class NamedEntries:
    """The listing methods of a store's row datasets or saved directories.

    Both keep one ``meta.json`` per ``<root><namespace>/<key>/`` and list their names the
    same way; a subclass says where (``_root``), what a folder holds besides nested
    entries (``_inner_folders``) and how to read ``meta.json`` (``get_meta``).
    """

    backend: Backend
    _root: str

    def get_meta(self, namespace: str, key: str) -> dict[str, Any]:
        raise NotImplementedError

    def _inner_folders(self, folder: str) -> Collection[str]:
        raise NotImplementedError

    def _names(self, prefix: str) -> list[tuple[str, str]]:
        # (namespace, key) of every meta.json under <root><prefix>; names with '/' are
        # split at their last '/' (split_names).
        folders = [
            path[len(self._root) : -len("/meta.json")]
            for path in self.backend.list(self._root + prefix)
            if path.endswith("/meta.json")
        ]
        return split_names(folders, self._inner_folders)

    def list_namespaces(self) -> list[str]:
        """Namespaces that hold at least one entry, sorted.

        An entry whose name contains ``/`` is listed once, under the namespace made of
        all but the last component of ``namespace/key``.
        """
        return sorted({namespace for namespace, _ in self._names("")})

    def list_keys(self, namespace: str) -> list[str]:
        """Keys of ``namespace``, sorted (see :meth:`list_namespaces` for nested names)."""
        check_nested_name("namespace", namespace)
        # Listing from the first component also sees the entries that could own ours.
        found = self._names(namespace.split("/", 1)[0] + "/")
        return sorted({key for ns, key in found if ns == namespace})

    def list_versions(self, namespace: str, key: str) -> list[str]:
        """Versions in creation order; DatasetNotFoundError if nothing is stored there."""
        return list(self.get_meta(namespace, key)["versions"])
