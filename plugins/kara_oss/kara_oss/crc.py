"""CRC-64/ECMA as OSS computes it (``x-oss-hash-crc64ecma``), in C through crcmod.

``crc64(data, crc)`` continues a previous value, so a running CRC over appended pieces
is ``crc64(piece, previous)``; :func:`crc64_combine` joins the CRCs of adjacent pieces
without their bytes (for multipart uploads, whose parts are checked one by one).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import crcmod

__all__ = ["crc64", "crc64_combine"]

_POLY = 0x142F0E1EBA9EA3693
_XOROUT = 0xFFFFFFFFFFFFFFFF

crc64: Callable[..., int] = crcmod.mkCrcFun(_POLY, initCrc=0, rev=True, xorOut=_XOROUT)


@cache
def _combiner() -> Callable[[int, int, int], int]:
    # Imported on first use: the test server uses crc64 and must not pull in oss2.
    from oss2.crc64_combine import mkCombineFun

    return mkCombineFun(_POLY, initCrc=0, rev=True, xorOut=_XOROUT)


def crc64_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC of ``a + b`` from ``crc64(a)``, ``crc64(b)`` and ``len(b)``."""
    return _combiner()(crc1, crc2, len2)
