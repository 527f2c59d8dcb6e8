"""Packs: the small files of a version stored once more, several to an object.

On an object store every file costs a request, and for a file of a few KiB the request,
not the bytes, is the cost: a folder of 2,000 small files is 2,000 round trips to load.
A save to a remote store (or with ``pack_small_files=True``) therefore also writes its
small files (up to :data:`PACK_MEMBER_MAX` each) as *packs*, objects of about
:data:`PACK_TARGET` bytes that hold the contents of many blobs one after the other, and
the manifest entry of such a file names its pack and its offset there (``pack``,
``pack_offset``; 2.x ignores both fields). A load from a remote store then fetches each
pack with one ranged read (or a few, when it needs only some of its files) instead of
one request per file.

- Every blob is still stored on its own, as 2.x expects: kara-storage 2.1.5 loads the
  version from the blobs, and a pack only saves requests. It costs storage: the small
  files' bytes are kept twice (``pack_small_files=False`` saves without packs; saves to
  file://, whose loads copy the blobs, write none unless asked).
- A pack is named by what it holds, ``pack-<sha1>`` of its members' blob names in
  order, so a re-save with the same small files finds its packs stored and writes none.
  Members are grouped in the version's path order, and a pack ends after a member
  chosen by its hash (a member of ``n`` bytes ends it with probability
  ``n / PACK_TARGET``), so one changed file changes one pack, not every pack after it.
- Nothing read from a pack is trusted: each file is checked against the size and sha1
  of its manifest entry, like a blob; a file whose bytes in the pack do not match, or a
  pack that is missing or short, is fetched from its own blob instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "PACK_GAP",
    "PACK_MAX",
    "PACK_MEMBER_MAX",
    "PACK_PREFIX",
    "PACK_TARGET",
    "Pack",
    "PackRange",
    "is_pack_name",
    "pack_name",
    "plan_packs",
    "read_ranges",
]

#: Files up to this size go into packs. Below it a request costs more than the bytes it
#: brings (at 100 MB/s and 10 ms a request, a 256 KiB file spends 80% of its time on
#: the request).
PACK_MEMBER_MAX = 256 * 1024
#: The average size of a pack, and the most one may hold.
PACK_TARGET = 8 * 1024 * 1024
PACK_MAX = 16 * 1024 * 1024
#: Members a load does not need are read through (one request) when the gap between
#: two needed ones is at most this; a larger gap starts another ranged read.
PACK_GAP = 1024 * 1024
PACK_PREFIX = "pack-"
_PACK_NAME = re.compile(r"pack-[0-9a-f]{40}")

T = TypeVar("T")


def is_pack_name(name: str) -> bool:
    """Whether ``name`` is a pack's name (``pack-`` and 40 lowercase hex digits)."""
    return _PACK_NAME.fullmatch(name) is not None


def pack_name(blobs: Iterable[str]) -> str:
    """The name of the pack holding ``blobs`` (``<md5>_<sha1>`` names) in this order."""
    digest = hashlib.sha1(b"kara-pack-1\n", usedforsecurity=False)
    for blob in blobs:
        digest.update(blob.encode("ascii") + b"\n")
    return PACK_PREFIX + digest.hexdigest()


@dataclass(frozen=True)
class Pack:
    """One pack: its name, its size and its members as ``(blob, size, offset)``."""

    name: str
    size: int
    members: tuple[tuple[str, int, int], ...]


def _ends_pack(blob: str, size: int) -> bool:
    # The sha1 half of the blob name, read as a fraction of 1: a member of `size` bytes
    # ends its pack with probability size / PACK_TARGET, whatever came before it.
    sha1 = blob.rpartition("_")[2]
    return int(sha1[:8], 16) < (size << 32) // PACK_TARGET


def plan_packs(blobs: Iterable[tuple[str, int]]) -> list[Pack]:
    """Group the distinct small blobs of ``blobs`` (``(name, size)``, in path order) into packs.

    Blobs larger than :data:`PACK_MEMBER_MAX` and repeats are left out. A pack with a
    single member is not made (its blob serves as well).
    """
    packs: list[Pack] = []
    current: list[tuple[str, int, int]] = []
    offset = 0
    seen: set[str] = set()

    def close() -> None:
        nonlocal current, offset
        if len(current) > 1:
            packs.append(Pack(pack_name(b for b, _, _ in current), offset, tuple(current)))
        current, offset = [], 0

    for blob, size in blobs:
        if size > PACK_MEMBER_MAX or blob in seen:
            continue
        seen.add(blob)
        if offset + size > PACK_MAX:
            close()
        current.append((blob, size, offset))
        offset += size
        if _ends_pack(blob, size):
            close()
    close()
    return packs


@dataclass(frozen=True)
class PackRange(Generic[T]):
    """One ranged read of a pack, ``[start, end)``, and the ``(item, offset, size)`` it serves."""

    start: int
    end: int
    members: tuple[tuple[T, int, int], ...]


def read_ranges(members: Iterable[tuple[T, int, int]], gap: int = PACK_GAP) -> list[PackRange[T]]:
    """The ranged reads that bring ``members`` (``(item, offset, size)``) of one pack.

    Members are read in offset order; two needed members less than ``gap`` bytes apart
    share a read (the bytes between them are read and dropped), as long as the read
    stays within :data:`PACK_MAX` bytes.
    """
    ranges: list[PackRange[T]] = []
    group: list[tuple[T, int, int]] = []
    start = end = 0
    for item in sorted(members, key=lambda m: m[1]):
        _, offset, size = item
        if group and (offset - end > gap or offset + size - start > PACK_MAX):
            ranges.append(PackRange(start, end, tuple(group)))
            group = []
        if not group:
            start = offset
        group.append(item)
        end = max(end, offset + size) if len(group) > 1 else offset + size
    if group:
        ranges.append(PackRange(start, end, tuple(group)))
    return ranges
