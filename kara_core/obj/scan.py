"""Walk a local folder: regular files, symbolic links and empty folders.

kara's own entries at the root (``.kara/`` state, ``.kara-staging/``) are skipped.
Symbolic links are never followed: a relative link that stays inside the folder is
recorded as a link; a link that is absolute or leaves the folder is refused, because it
would not mean the same thing where the version is loaded. Other special files (pipes,
sockets, devices) are refused too.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from ..errors import ConfigurationError
from .manifest import RESERVED_NAMES, link_stays_inside

__all__ = ["LocalFile", "ScanResult", "scan_folder"]


@dataclass(frozen=True)
class LocalFile:
    """A regular file found in the folder."""

    rel: str
    path: str
    st: os.stat_result


@dataclass
class ScanResult:
    """Everything a folder holds, by path relative to its root."""

    files: list[LocalFile] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    empty_dirs: list[str] = field(default_factory=list)
    dirs: set[str] = field(default_factory=set)


def scan_folder(root: str, *, strict: bool = True) -> ScanResult:
    """Return the files, links and empty folders under ``root`` (which must exist).

    With ``strict`` (saving), links leaving the folder and special files raise
    :class:`~kara_core.errors.ConfigurationError`; without it (inspecting a load target)
    they are reported as links / files like any other entry.
    """
    result = ScanResult()
    refused: list[str] = []
    stack = [("", root)]
    while stack:
        rel_dir, full_dir = stack.pop()
        has_children = False
        with os.scandir(full_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if not rel_dir and entry.name in RESERVED_NAMES:
                continue
            has_children = True
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                result.dirs.add(rel)
                stack.append((rel, entry.path))
            elif stat.S_ISREG(st.st_mode):
                result.files.append(LocalFile(rel, entry.path, st))
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(entry.path)
                if strict and not link_stays_inside(rel, target):
                    refused.append(f"{rel} -> {target} (symbolic link leaving the folder)")
                result.links[rel] = target
            elif strict:
                refused.append(f"{rel} (special file)")
            else:
                result.files.append(LocalFile(rel, entry.path, st))
        if rel_dir and not has_children:
            result.empty_dirs.append(rel_dir)
    if refused:
        shown = "\n  ".join(refused[:20]) + (f"\n  ... and {len(refused) - 20} more" if len(refused) > 20 else "")
        raise ConfigurationError(
            f"cannot save {root}: kara keeps symbolic links as links, so they must be relative and stay inside "
            f"the folder, and it cannot save special files; replace these with regular files:\n  {shown}"
        )
    result.files.sort(key=lambda f: f.rel)
    result.empty_dirs.sort()
    return result
