"""The write path's memory: one record buffer reused for the writer's life, no heap churn."""

from __future__ import annotations

import json
import random
import sys

import pytest

from kara_core import KaraStorage

from .conftest import record, run_kara

# Writes 100,000 small records in a fresh interpreter and reports the minor page faults of
# the write loop. Before the record buffer, every batch of 512 records was freed at once,
# glibc trimmed the heap and the next batch faulted it in again: ~45,000 faults here.
_FAULTS_OF_A_WRITE = """
import json, resource, sys
from kara_core import KaraStorage
records = [{"id": i, "text": "sample text number %d " % i * 4, "tokens": list(range(i % 32))} for i in range(100_000)]
store = KaraStorage("file://" + sys.argv[1], fsync=False)
ds = store.open_dataset("ns", "rows", "w", version="1")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for rec in records:
    ds.write(rec)
ds.flush()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
many_before = after
with store.open_dataset("ns", "many", "w", version="1") as many:
    many.write_many(records)
many_after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ds.close()
print(json.dumps({"write": after - before, "write_many": many_after - many_before}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's heap trimming is what is measured")
def test_writing_small_records_does_not_fault_the_heap_in_again_per_batch(tmp_path) -> None:
    proc = run_kara(_FAULTS_OF_A_WRITE, str(tmp_path / "store"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    faults = json.loads(out.strip().splitlines()[-1])
    # 8 MiB of record buffer is ~2,000 pages faulted in once; per-batch churn was ~45,000.
    assert faults["write"] < 8_000, faults
    assert faults["write_many"] < 8_000, faults


def test_the_record_buffer_is_reused_across_spills(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1", buffer_size=4096) as ds:
        writer = ds._writer
        buffer = writer.pending
        for i in range(5000):
            ds.write(record(i))
        assert writer.pending is buffer
        assert buffer.tell() < 4096 + 512 * 1024
    with store.open_dataset("ns", "rows") as ds:
        assert list(ds) == [record(i) for i in range(5000)]


@pytest.mark.parametrize("buffer_size", [1, 4096, 8 * 1024 * 1024])
def test_small_and_large_records_interleaved_keep_their_order(store: KaraStorage, buffer_size: int) -> None:
    rng = random.Random(buffer_size)
    blobs = [rng.randbytes(rng.choice([0, 10, 300, 70_000, 200_000])) for _ in range(400)]
    with store.open_dataset("ns", "one", "w", version="1", serialization="raw", buffer_size=buffer_size) as ds:
        for blob in blobs:
            ds.write(blob)
        assert len(ds) == len(blobs)
        assert ds.nbytes() == sum(map(len, blobs))
    with store.open_dataset("ns", "many", "w", version="1", serialization="raw", buffer_size=buffer_size) as ds:
        ds.write_many(blobs[:150])
        ds.write(blobs[150])
        ds.write_many(blobs[151:])
    for key in ("one", "many"):
        with store.open_dataset("ns", key, serialization="raw") as ds:
            assert list(ds) == blobs


def test_a_huge_spill_is_not_kept_as_the_buffer(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1", serialization="raw", buffer_size=1024) as ds:
        writer = ds._writer
        ds.write_many([b"x" * 60_000] * 10)  # 600 kB buffered, then spilled
        assert writer.pending.tell() == 0
        assert len(writer.pending.getbuffer()) == 0
    with store.open_dataset("ns", "rows", serialization="raw") as ds:
        assert list(ds) == [b"x" * 60_000] * 10


def test_a_record_that_fails_to_serialize_in_write_many_drops_only_its_chunk(store: KaraStorage) -> None:
    bad = 700
    objs = [record(i) for i in range(1000)]
    objs[bad] = {"id": bad, "unserializable": {1, 2}}  # a set: orjson refuses it
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        ds.write(record(-1))
        with pytest.raises(TypeError):
            ds.write_many(objs)
        kept = len(ds) - 1
        # Whole chunks before the bad record are written; nothing of its chunk is.
        assert 0 < kept <= bad
        ds.write(record(-2))
        ds.write_many(record(i) for i in range(5))
    with store.open_dataset("ns", "rows") as ds:
        assert list(ds) == [record(-1), *objs[:kept], record(-2), *(record(i) for i in range(5))]


def test_write_many_of_large_records_appends_them_without_piling_them_up(store: KaraStorage) -> None:
    blobs = [bytes([i % 256]) * 20_000 for i in range(700)]
    sizes: list[int] = []
    with store.open_dataset("ns", "rows", "w", version="1", serialization="raw") as ds:
        writer = ds._writer
        real_append = writer.append

        def append(raws: list[bytes]) -> None:
            sizes.append(sum(map(len, raws)))
            real_append(raws)

        writer.append = append
        ds.write_many(iter(blobs))
        # The first chunk of 512 records, then chunks of about 1 MiB appended directly:
        # records this large are never copied into the record buffer.
        assert sum(sizes) == 700 * 20_000
        assert sizes[0] == 512 * 20_000
        assert max(sizes[1:]) <= 1024 * 1024 + 20_000
        assert len(writer.pending.getbuffer()) <= 512 * 20_000
    with store.open_dataset("ns", "rows", serialization="raw") as ds:
        assert list(ds) == blobs
