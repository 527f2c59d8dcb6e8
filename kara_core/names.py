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

from .errors import ConfigurationError

__all__ = ["check_name", "check_nested_name", "split_names"]

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
