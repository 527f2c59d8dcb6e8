"""A stored record its serializer cannot decode: every read path names it and where it is.

The error is a SerializationError (a ValueError, as orjson's and the json module's
errors are), chained from the serializer's own, naming the record, the dataset and the
block file and offset of its bytes; reads go on after it. It is never an EOFError, which
2.x-style loops (``except EOFError: break``) take for the end of the dataset.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import orjson
import pytest

from kara_core import KaraStorage
from kara_core.errors import SerializationError
from kara_core.pipeline.sources import RowView

DAMAGED = 567


@pytest.fixture
def damaged(tmp_path: Path) -> KaraStorage:
    """1,000 json records {"i": i}; one byte of record 567 replaced by '#'."""
    store = KaraStorage(f"file://{tmp_path}/store")
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many({"i": i} for i in range(1000))
        start = sum(len(orjson.dumps({"i": i})) for i in range(DAMAGED))
    block = tmp_path / "store/row/ns/k/1/data/0.blk"
    data = bytearray(block.read_bytes())
    data[start + 7] = ord("#")  # {"i":56#}
    block.write_bytes(bytes(data))
    return store


def _named(exc: SerializationError, offset: int) -> None:
    message = str(exc)
    assert f"record {DAMAGED} of dataset ns/k version '1'" in message
    assert "'json' serializer (JSONDecodeError:" in message
    assert f"its 9 bytes at offset {offset} of file://" in message and "/row/ns/k/1/data/0.blk" in message
    assert isinstance(exc, ValueError) and not isinstance(exc, EOFError)
    assert isinstance(exc.__cause__, orjson.JSONDecodeError)


def test_every_read_path_names_the_record_that_does_not_decode(damaged: KaraStorage) -> None:
    offset = sum(len(orjson.dumps({"i": i})) for i in range(DAMAGED))
    ds = damaged.open_dataset("ns", "k")
    with pytest.raises(SerializationError) as by_index:
        ds[DAMAGED]
    _named(by_index.value, offset)
    with pytest.raises(SerializationError) as by_range:
        ds.read_range(500, 600)
    _named(by_range.value, offset)
    # Sequential reads: the error at the record, then the reads go on after it.
    for read in ("read", "iterate"):
        reader = damaged.open_dataset("ns", "k")
        got = []
        with pytest.raises(SerializationError) as sequential:
            if read == "read":
                while True:
                    got.append(reader.read()["i"])
            else:
                got.extend(record["i"] for record in reader)
        _named(sequential.value, offset)
        assert got == list(range(DAMAGED)) and reader.tell() == DAMAGED + 1
        assert [record["i"] for record in reader] == list(range(DAMAGED + 1, 1000))
    # The loaders' batched path (mixtures, packed views, the torch pipeline).
    view = RowView(ds)
    with pytest.raises(SerializationError) as fetched:
        view.fetch(np.arange(560, 580))
    _named(fetched.value, offset)


def test_the_torch_pipeline_names_the_record_that_does_not_decode(damaged: KaraStorage) -> None:
    from kara_torch import make_torch_dataset

    seen = []
    with pytest.raises(SerializationError) as failed:
        for sample in make_torch_dataset(damaged.open_dataset("ns", "k")):
            seen.append(sample["i"])
    assert f"record {DAMAGED} of dataset ns/k" in str(failed.value)
    assert DAMAGED not in seen


def test_mixtures_packed_views_and_slices_name_the_record_that_does_not_decode(
    damaged: KaraStorage, tmp_path: Path
) -> None:
    from kara_torch import make_torch_dataset

    import kara_core as kara

    other = KaraStorage(f"file://{tmp_path}/other")
    with other.open_dataset("ns", "o", "w", version="1") as ds:
        ds.write_many({"i": -i} for i in range(1000))
    damaged_rows, other_rows = damaged.open_dataset("ns", "k"), other.open_dataset("ns", "o")

    def mixture() -> object:
        return kara.mix({"a": damaged_rows, "b": other_rows}, weights={"a": 1, "b": 1}, seed=5)

    def tokens() -> object:
        # pack() counts tokens, then cuts samples: field=None takes each record (a dict
        # of one key) as its own sequence of one token.
        return kara.pack(damaged_rows, field=None, seq_len=4)

    reads = {
        "mixture": lambda: list(mixture()),
        "mixture fetch": lambda: mixture().fetch(np.arange(2000)),
        "torch over a mixture": lambda: list(make_torch_dataset(mixture())),
        "packed view": lambda: list(tokens()),
        "torch over a packed view": lambda: list(make_torch_dataset(tokens())),
    }
    for read in reads.values():
        with pytest.raises(SerializationError, match=f"record {DAMAGED} of dataset ns/k version '1'"):
            read()
    with pytest.raises(SerializationError, match=f"record {DAMAGED} \\(record 67 of this slice\\) of dataset ns/k"):
        damaged_rows.slice(500, 200)[67]


def test_a_record_emptied_by_a_damaged_index_is_no_end_of_dataset(tmp_path: Path) -> None:
    # pickle.loads(b"") raises EOFError: a 2.x-style loop took it for the end of the
    # dataset and stopped there without a word.
    store = KaraStorage(f"file://{tmp_path}/store")
    with store.open_dataset("ns", "k", "w", version="1", serialization="pickle") as ds:
        ds.write_many(list(range(100)))
    index = tmp_path / "store/row/ns/k/1/index/0.blk"
    ends = list(struct.unpack("<100Q", index.read_bytes()))
    ends[40] = ends[39]  # record 40 now holds no byte
    index.write_bytes(struct.pack("<100Q", *ends))
    ds = store.open_dataset("ns", "k")
    got = []
    with pytest.raises(SerializationError, match=r"record 40 .*'pickle' serializer \(EOFError: .*its 0 bytes"):
        while True:
            try:
                got.append(ds.read())
            except EOFError:
                break
    assert got == list(range(40))
