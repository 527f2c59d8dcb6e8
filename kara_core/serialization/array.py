"""The ``numpy`` serializer: one ``np.ndarray`` per record, with its dtype and shape.

A record is a small header and the array's bytes in C order::

    u8 format (1) | u8 ndim | u16 dtype length | dtype.str (ASCII) | ndim x u64 shape | zero padding

all little-endian, padded so the array's bytes start 8-byte aligned within the record.
Reading returns a read-only array over the record's bytes: on file:// stores these are
the mapped block itself, so no copy is made.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from ..errors import SerializationError
from .base import Serializer

__all__ = ["NumpySerializer"]

_FORMAT = 1
_FIXED = struct.Struct("<BBH")
_ALIGN = 8
_ONE_DIM = struct.Struct("<Q")
#: dtypes of records already read and checked (``dtype.str`` as stored -> dtype), and
#: how many are kept: deserialize_many reads 1-D records of these without parsing again.
_DTYPES: dict[bytes, Any] = {}
_KNOWN_DTYPES = 256


class NumpySerializer(Serializer):
    """Stores ``np.ndarray`` records (any shape, 0-d and empty included) with dtype and shape.

    Object arrays and structured dtypes are refused: their bytes are not the data. Reads
    return read-only arrays; on local files they view the mapped block (no copy).
    """

    name = "numpy"
    #: Ask the row layer for views of mapped memory instead of copies.
    zero_copy = True

    def serialize(self, x: Any) -> bytes:
        import numpy as np

        if not isinstance(x, np.ndarray):
            raise SerializationError(
                f"the numpy serializer stores np.ndarray records, got {type(x).__name__}; "
                "convert with np.asarray(...) first"
            )
        dtype = x.dtype
        if dtype.hasobject or dtype.fields is not None:
            raise SerializationError(
                f"the numpy serializer cannot store arrays of dtype {dtype} (object or structured "
                "dtypes are Python objects, not bytes); use serialization='pickle' for them"
            )
        descr = dtype.str.encode("ascii")
        head = _FIXED.pack(_FORMAT, x.ndim, len(descr)) + descr + struct.pack(f"<{x.ndim}Q", *x.shape)
        head += bytes(-len(head) % _ALIGN)
        # ascontiguousarray copies only arrays that are not C-contiguous already; the byte
        # view also covers dtypes the buffer protocol does not know (datetime64).
        return b"".join((head, np.ascontiguousarray(x).reshape(-1).view(np.uint8)))

    def deserialize(self, x: bytes) -> Any:
        import numpy as np

        view = x if type(x) is memoryview else memoryview(x)
        size = len(view)
        if size < _FIXED.size:
            raise SerializationError(f"a numpy record is at least {_FIXED.size} bytes, got {size}")
        _, ndim, length = _FIXED.unpack_from(view)
        end = _FIXED.size + length + 8 * ndim
        if end > size:
            raise SerializationError("numpy record header runs past the end of the record")
        dtype, shape, count, start = _layout(bytes(view[:end]))
        if count * dtype.itemsize != size - start:
            raise SerializationError(
                f"numpy record of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes, "
                f"has {size - start}"
            )
        array = np.frombuffer(view, dtype=dtype, count=count, offset=start)
        if ndim != 1:
            array = array.reshape(shape)
        if not view.readonly:  # stored records come read-only; a caller's bytearray does not
            array.flags.writeable = False
        if len(_DTYPES) >= _KNOWN_DTYPES:
            _DTYPES.clear()
        _DTYPES[bytes(view[_FIXED.size : _FIXED.size + length])] = dtype
        return array

    def deserialize_many(self, xs: list[bytes]) -> list[Any]:
        # One loop with the parsed dtypes at hand (records of one dataset mostly share one
        # dtype; token records differ only in their shape). Every record this loop does not
        # handle itself goes through deserialize, which checks and reports it.
        import numpy as np

        frombuffer, fixed, dtypes, slow = np.frombuffer, _FIXED.unpack_from, _DTYPES, self.deserialize
        one = _ONE_DIM.unpack_from
        out = []
        append = out.append
        for x in xs:
            try:
                version, ndim, length = fixed(x)
                dtype = dtypes[x[_FIXED.size : _FIXED.size + length]]
                if version != _FORMAT or ndim != 1:
                    raise KeyError  # other shapes: the general path
                (count,) = one(x, _FIXED.size + length)
            except (KeyError, ValueError, TypeError, struct.error):
                append(slow(x))
                continue
            head = _FIXED.size + length + 8
            start = head + (-head % _ALIGN)
            if count * dtype.itemsize != len(x) - start:
                append(slow(x))  # raises: the size does not match the header
                continue
            array = frombuffer(x, dtype=dtype, count=count, offset=start)
            if array.flags.writeable:  # stored records come read-only; a caller's bytearray does not
                array.flags.writeable = False
            append(array)
        return out

    def deserialize_joined(self, data: memoryview, bounds: Any) -> list[Any]:
        # Records with the first one's header are checked with vector operations over all
        # the run's headers at once, then made without a Python step per record (one
        # size: rows of one strided array, made by ``list`` in C) or with one array slice
        # each (1-D records of one dtype and any length: token documents). Anything else
        # (mixed dtypes or shapes, 0-d arrays, damaged records) goes the general way.
        import numpy as np

        count = len(bounds) - 1
        sizes = np.diff(bounds)
        if count < 2 or int(sizes.min()) < _FIXED.size:
            return super().deserialize_joined(data, bounds)
        first = int(bounds[0])
        version, ndim, length = _FIXED.unpack_from(data, first)
        end = _FIXED.size + length + 8 * ndim
        if version != _FORMAT or ndim == 0 or end > int(sizes[0]):
            return super().deserialize_joined(data, bounds)
        try:
            dtype, shape, elements, start = _layout(bytes(data[first : first + end]))
        except SerializationError:
            return super().deserialize_joined(data, bounds)  # raises for the record at fault
        # Over a byte array of the view, so the arrays keep the view (and what it maps) as base.
        flat = np.frombuffer(data, dtype=np.uint8)
        size = int(sizes[0])
        if (sizes == size).all():
            if elements * dtype.itemsize != size - start:
                return super().deserialize_joined(data, bounds)
            heads = np.ndarray((count, start), dtype=np.uint8, buffer=flat, offset=first, strides=(size, 1))
            if not (heads == heads[0]).all():
                return super().deserialize_joined(data, bounds)
            inner = tuple(int(np.prod(shape[k + 1 :], dtype=np.int64)) * dtype.itemsize for k in range(len(shape)))
            rows = np.ndarray((count, *shape), dtype=dtype, buffer=flat, offset=first + start, strides=(size, *inner))
            if rows.flags.writeable:  # stored records come read-only; a caller's bytearray does not
                rows.flags.writeable = False
            return list(rows)
        itemsize = dtype.itemsize
        if ndim != 1 or not itemsize or int(sizes.min()) < start:
            return super().deserialize_joined(data, bounds)
        starts = bounds[:-1]
        heads = flat[starts[:, None] + np.arange(start)]
        at = _FIXED.size + length  # the 8 shape bytes; every other header byte is the first's
        fixed = np.ones(start, dtype=bool)
        fixed[at : at + 8] = False
        if not (heads[:, fixed] == heads[0, fixed]).all():
            return super().deserialize_joined(data, bounds)
        counts = heads[:, at : at + 8].copy().view(np.dtype("<u8")).ravel()
        if (counts > np.uint64(sizes.max())).any():
            return super().deserialize_joined(data, bounds)  # a count no record can hold
        counts = counts.astype(np.int64)
        offsets = starts + start
        base = int(offsets[0]) % itemsize
        if not (counts * itemsize == sizes - start).all() or ((offsets - base) % itemsize).any():
            return super().deserialize_joined(data, bounds)
        typed = np.ndarray(((len(flat) - base) // itemsize,), dtype=dtype, buffer=flat, offset=base)
        if typed.flags.writeable:
            typed.flags.writeable = False
        lo = (offsets - base) // itemsize
        return [typed[a:b] for a, b in zip(lo.tolist(), (lo + counts).tolist(), strict=True)]


@functools.lru_cache(maxsize=1024)
def _layout(header: bytes) -> tuple[Any, tuple[int, ...], int, int]:
    """dtype, shape, element count and data offset of a record header (records of one
    dataset mostly share a few headers: each is parsed once)."""
    import numpy as np

    version, ndim, length = _FIXED.unpack_from(header)
    if version != _FORMAT:
        raise SerializationError(f"numpy record of unknown format {version} (this kara reads format {_FORMAT})")
    start = _FIXED.size + length
    try:
        dtype = np.dtype(header[_FIXED.size : start].decode("ascii"))
    except (TypeError, ValueError, UnicodeDecodeError):
        raise SerializationError("numpy record names an unknown dtype") from None
    if dtype.hasobject or dtype.fields is not None:
        raise SerializationError("numpy record claims an object or structured dtype, which is never stored")
    shape = struct.unpack_from(f"<{ndim}Q", header, start)
    count = 1
    for dim in shape:
        count *= dim
    return dtype, shape, count, len(header) + (-len(header) % _ALIGN)
