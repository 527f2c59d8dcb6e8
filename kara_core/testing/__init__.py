"""The backend conformance suite: pytest tests every backend plugin runs against itself.

Subclass :class:`BackendConformance` in your plugin's tests and override the ``backend``
fixture with a fresh, empty, writable backend::

    from kara_core.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(...)

A read-only backend (a static web mirror) subclasses :class:`ReadOnlyBackendConformance`
instead and overrides two fixtures: ``source`` (a writable backend) and ``backend`` (the
read-only backend that serves what ``source`` holds). The row-dataset and
directory-version layers have their own suites in :mod:`kara_core.testing.row` and
:mod:`kara_core.testing.obj`, used the same way.
"""

from __future__ import annotations

import io
import os
import pickle
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..backend import Appender, Backend, Capabilities
from ..errors import NotFoundError, ReadOnlyStoreError, UnsafePathError
from ..url import opened_with

__all__ = ["BackendConformance", "ReadOnlyBackendConformance"]

_BIG = 5 * 1024 * 1024 + 123  # bigger than one read-ahead or multipart chunk in most backends

UNSAFE_PATHS = ["../escape", "a/../../b", "/abs/path", "a//b", "a/./b", "nul\x00byte", ""]


def _pattern(n: int, seed: int = 0) -> bytes:
    # Position-dependent bytes, so a range read from the wrong offset never matches.
    block = bytes((i * 31 + seed) % 251 for i in range(251))
    return (block * (n // len(block) + 1))[:n]


class _StreamBroke(Exception):
    """What :class:`_Breaking` raises."""


class _Breaking(io.RawIOBase):
    """A stream of ``data`` that raises once ``fails_after`` bytes have been read."""

    def __init__(self, data: bytes, fails_after: int) -> None:
        self._data, self._at, self._fails_after = data, 0, fails_after

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        if self._at >= self._fails_after:
            raise _StreamBroke(f"the source broke after {self._at} bytes")
        n = min(len(buf), self._fails_after - self._at, len(self._data) - self._at)
        buf[:n] = self._data[self._at : self._at + n]
        self._at += n
        return n


class _Common:
    """Read-side tests shared by writable and read-only suites."""

    @pytest.fixture
    def backend(self) -> Backend:
        """Override: the backend under test."""
        pytest.fail("override the `backend` fixture in your conformance subclass")

    def _store(self, backend: Backend, path: str, data: bytes) -> None:
        """Put ``data`` at ``path`` so that ``backend`` can read it."""
        backend.put(path, data)

    def test_capabilities_are_declared(self, backend: Backend) -> None:
        assert isinstance(backend.capabilities, Capabilities)

    def test_url_is_set_and_repr_names_it(self, backend: Backend) -> None:
        assert backend.url
        assert backend.url in repr(backend)

    def test_size_of_absent_object_is_none(self, backend: Backend) -> None:
        assert backend.size("absent/object.bin") is None
        assert not backend.exists("absent/object.bin")

    def test_read_of_absent_object_raises_not_found(self, backend: Backend) -> None:
        with pytest.raises(NotFoundError):
            backend.read("absent/object.bin")
        assert backend.read_if_exists("absent/object.bin") is None

    def test_read_returns_whole_object(self, backend: Backend) -> None:
        data = _pattern(10_000)
        self._store(backend, "dir/whole.bin", data)
        assert backend.read("dir/whole.bin") == data
        assert backend.size("dir/whole.bin") == len(data)

    def test_empty_object_has_size_zero_and_reads_empty(self, backend: Backend) -> None:
        self._store(backend, "dir/empty.bin", b"")
        assert backend.size("dir/empty.bin") == 0
        assert backend.read("dir/empty.bin") == b""

    def test_read_range_returns_exact_slice(self, backend: Backend) -> None:
        data = _pattern(10_000, seed=1)
        self._store(backend, "r/range.bin", data)
        for start, end in [(0, 1), (1, 2), (17, 9_000), (9_999, 10_000), (4_096, 8_192)]:
            assert backend.read("r/range.bin", start, end) == data[start:end]
        assert backend.read("r/range.bin", 9_000) == data[9_000:]

    def test_read_range_past_the_end_is_cut_at_the_end(self, backend: Backend) -> None:
        data = _pattern(1_000, seed=2)
        self._store(backend, "r/short.bin", data)
        assert backend.read("r/short.bin", 900, 5_000) == data[900:]

    def test_an_empty_range_reads_nothing_but_an_absent_object_still_raises(self, backend: Backend) -> None:
        self._store(backend, "r/empty-range.bin", _pattern(100, seed=4))
        assert backend.read("r/empty-range.bin", 50, 50) == b""
        assert backend.read("r/empty-range.bin", 60, 40) == b""
        with pytest.raises(NotFoundError):
            backend.read("absent/object.bin", 5, 5)

    def test_large_object_round_trips(self, backend: Backend) -> None:
        data = _pattern(_BIG, seed=3)
        self._store(backend, "big/object.bin", data)
        assert backend.size("big/object.bin") == len(data)
        assert backend.read("big/object.bin") == data
        assert backend.read("big/object.bin", _BIG - 1000, _BIG + 10) == data[-1000:]

    def test_open_read_streams_from_an_offset(self, backend: Backend) -> None:
        data = _pattern(_BIG, seed=4)
        self._store(backend, "stream/object.bin", data)
        with backend.open_read("stream/object.bin", 1234) as stream:
            chunks = []
            while chunk := stream.read(1 << 20):
                chunks.append(chunk)
        assert b"".join(chunks) == data[1234:]

    def test_open_read_of_absent_object_raises_not_found(self, backend: Backend) -> None:
        with pytest.raises(NotFoundError):
            backend.open_read("absent/stream.bin").read()

    def test_concurrent_range_reads_return_the_right_bytes(self, backend: Backend) -> None:
        data = _pattern(1 << 20, seed=5)
        self._store(backend, "conc/object.bin", data)
        errors: list[str] = []

        def worker(k: int) -> None:
            for j in range(20):
                start = (k * 7919 + j * 104729) % (len(data) - 5000)
                got = backend.read("conc/object.bin", start, start + 5000)
                if got != data[start : start + 5000]:
                    errors.append(f"thread {k} read {start}")

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

    @pytest.mark.parametrize("path", UNSAFE_PATHS)
    def test_unsafe_paths_are_refused(self, backend: Backend, path: str) -> None:
        with pytest.raises(UnsafePathError):
            backend.size(path)
        with pytest.raises(UnsafePathError):
            backend.read(path)


class BackendConformance(_Common):
    """Tests every writable backend must pass. Override the ``backend`` fixture."""

    def test_backend_is_writable_and_appendable(self, backend: Backend) -> None:
        assert backend.capabilities.writable
        assert backend.capabilities.appendable

    def test_put_replaces_an_existing_object(self, backend: Backend) -> None:
        backend.put("p/obj", b"first version")
        backend.put("p/obj", b"second")
        assert backend.read("p/obj") == b"second"
        assert backend.size("p/obj") == 6

    def test_put_accepts_a_stream(self, backend: Backend) -> None:
        data = _pattern(_BIG, seed=6)
        backend.put("p/streamed", io.BytesIO(data))
        assert backend.read("p/streamed") == data

    @pytest.mark.parametrize("fails_after", [1000, _BIG - 7, _BIG], ids=["early", "late", "at-the-end"])
    def test_a_put_whose_stream_fails_stores_nothing(self, backend: Backend, fails_after: int) -> None:
        # kara_core.obj refuses a file that changes while it is uploaded by raising from
        # the stream at its end: the blob must then not exist under its content's name.
        backend.put("broken/kept", b"the old object")
        for path in ("broken/new", "broken/kept"):
            with pytest.raises(_StreamBroke):
                backend.put(path, _Breaking(_pattern(_BIG, seed=8), fails_after))
        assert backend.size("broken/new") is None and not backend.exists("broken/new")
        assert backend.read("broken/kept") == b"the old object"
        with backend.open_batch() as batch:
            with pytest.raises(_StreamBroke):
                batch.put("broken/batched", _Breaking(_pattern(_BIG, seed=9), fails_after))
            batch.put("broken/other", b"fine")
            batch.commit()
        assert not backend.exists("broken/batched") and backend.read("broken/other") == b"fine"
        assert sorted(backend.list("broken/")) == ["broken/kept", "broken/other"]

    def test_put_accepts_bytearray_and_memoryview(self, backend: Backend) -> None:
        backend.put("p/ba", bytearray(b"abc"))
        backend.put("p/mv", memoryview(b"xyz"))
        assert backend.read("p/ba") == b"abc"
        assert backend.read("p/mv") == b"xyz"

    def test_unsynced_puts_are_whole_objects_and_sync_keeps_them(self, backend: Backend) -> None:
        data = _pattern(_BIG, seed=7)
        backend.put_unsynced("p/unsynced", memoryview(data))
        backend.put_unsynced("p/small", b"s")
        backend.put_unsynced("p/small", b"small")  # replaces, like put
        assert backend.read("p/unsynced") == data and backend.read("p/small") == b"small"
        scope = backend.sync_scope()
        assert scope is None or (isinstance(scope, str) and scope == backend.sync_scope())
        backend.sync(["p/unsynced", "p/small"])
        assert backend.read("p/unsynced") == data and backend.size("p/small") == 5

    def test_readers_never_see_a_partial_put(self, backend: Backend) -> None:
        old, new = b"a" * 2_000_000, b"b" * 3_000_000
        backend.put("atomic/obj", old)
        seen: set[tuple[int, bytes]] = set()
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                got = backend.read("atomic/obj")
                seen.add((len(got), got[:1] + got[-1:]))

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for i in range(6):
                backend.put("atomic/obj", new if i % 2 == 0 else old)
        finally:
            stop.set()
            thread.join()
        assert seen <= {(len(old), b"aa"), (len(new), b"bb")}

    def test_put_if_absent_creates_once(self, backend: Backend) -> None:
        assert backend.put_if_absent("once/obj", b"first") is True
        assert backend.put_if_absent("once/obj", b"second") is False
        assert backend.read("once/obj") == b"first"

    def test_create_lock_creates_once(self, backend: Backend) -> None:
        assert backend.create_lock("once/lock", b"first") is True
        assert backend.create_lock("once/lock", b"second") is False
        assert backend.put_if_absent("once/lock", b"third") is False
        assert backend.read("once/lock") == b"first"

    def test_put_if_absent_has_exactly_one_winner_under_contention(self, backend: Backend) -> None:
        results: list[tuple[int, bool]] = []
        barrier = threading.Barrier(8)

        def contender(k: int) -> None:
            barrier.wait()
            results.append((k, backend.put_if_absent("race/obj", b"winner %d" % k)))

        threads = [threading.Thread(target=contender, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [k for k, won in results if won]
        assert len(winners) == 1
        assert backend.read("race/obj") == b"winner %d" % winners[0]

    def test_append_creates_the_object_and_tracks_position(self, backend: Backend) -> None:
        appender = backend.open_append("a/log.blk")
        assert isinstance(appender, Appender)
        assert appender.position == 0
        appender.append(b"hello ")
        appender.append(bytearray(b"world"))
        assert appender.position == 11
        appender.close()
        assert backend.read("a/log.blk") == b"hello world"

    def test_flush_makes_appended_bytes_visible(self, backend: Backend) -> None:
        appender = backend.open_append("a/visible.blk")
        try:
            appender.append(b"0123456789")
            appender.flush()
            assert backend.read("a/visible.blk") == b"0123456789"
            assert backend.size("a/visible.blk") == 10
        finally:
            appender.close()

    def test_reopened_append_continues_at_the_end(self, backend: Backend) -> None:
        first = backend.open_append("a/continue.blk")
        first.append(b"abc")
        first.close()
        second = backend.open_append("a/continue.blk")
        assert second.position == 3
        second.append(b"def")
        second.close()
        assert backend.read("a/continue.blk") == b"abcdef"

    def test_many_appends_keep_their_order(self, backend: Backend) -> None:
        appender = backend.open_append("a/many.blk")
        expected = b""
        for i in range(200):
            piece = b"%d," % i
            appender.append(piece)
            expected += piece
            if i % 50 == 49:
                appender.flush()
        appender.close()
        assert backend.read("a/many.blk") == expected

    def test_list_yields_everything_under_a_prefix(self, backend: Backend) -> None:
        for path in ["ls/a/1", "ls/a/2", "ls/a/sub/3", "ls/b/4", "lsx/5"]:
            backend.put(path, b"x")
        assert sorted(backend.list("ls/a/")) == ["ls/a/1", "ls/a/2", "ls/a/sub/3"]
        assert sorted(backend.list("ls/")) == ["ls/a/1", "ls/a/2", "ls/a/sub/3", "ls/b/4"]
        assert sorted(backend.list("ls")) == ["ls/a/1", "ls/a/2", "ls/a/sub/3", "ls/b/4", "lsx/5"]

    def test_list_of_an_absent_prefix_is_empty(self, backend: Backend) -> None:
        assert list(backend.list("nothing/here/")) == []

    def test_list_shows_appended_objects(self, backend: Backend) -> None:
        appender = backend.open_append("lsa/data/0.blk")
        appender.append(b"x")
        appender.close()
        assert list(backend.list("lsa/")) == ["lsa/data/0.blk"]

    def test_list_handles_many_objects(self, backend: Backend) -> None:
        # More than a page of S3, GCS or Azure listings (1,000), put from 8 threads at once
        # (every Backend method is thread safe): one at a time takes 10-30 s on emulators.
        names = [f"many/{i:04d}" for i in range(1_100)]
        with ThreadPoolExecutor(8) as pool:
            for done in [pool.submit(backend.put, name, b"") for name in names]:
                done.result()
        assert sorted(backend.list("many/")) == names

    def test_delete_removes_the_object(self, backend: Backend) -> None:
        backend.put("d/obj", b"x")
        backend.delete("d/obj")
        assert backend.size("d/obj") is None
        assert list(backend.list("d/")) == []

    def test_delete_of_an_absent_object_is_not_an_error(self, backend: Backend) -> None:
        backend.delete("d/never-existed")

    def test_put_if_absent_after_delete_creates_again(self, backend: Backend) -> None:
        assert backend.put_if_absent("d/lock", b"1")
        backend.delete("d/lock")
        assert backend.put_if_absent("d/lock", b"2")
        assert backend.read("d/lock") == b"2"

    def test_paths_with_unicode_and_spaces_work(self, backend: Backend) -> None:
        backend.put("u/数据 集/file name.json", b"{}")
        assert backend.read("u/数据 集/file name.json") == b"{}"
        assert list(backend.list("u/")) == ["u/数据 集/file name.json"]

    def test_a_backslash_is_a_plain_character_of_a_name(self, backend: Backend) -> None:
        # kara-storage 2.x stores may hold keys with '\\'; it never separates components.
        backend.put("bs/a\\b", b"one")
        backend.put("bs/a\\..\\c", b"two")
        assert sorted(backend.list("bs/")) == ["bs/a\\..\\c", "bs/a\\b"]
        assert (backend.read("bs/a\\b"), backend.read("bs/a\\..\\c")) == (b"one", b"two")
        assert backend.size("bs/a") is None
        assert backend.size("c") is None

    @pytest.mark.parametrize("path", UNSAFE_PATHS)
    def test_unsafe_paths_are_refused_for_writes(self, backend: Backend, path: str) -> None:
        with pytest.raises(UnsafePathError):
            backend.put(path, b"x")
        with pytest.raises(UnsafePathError):
            backend.put_if_absent(path, b"x")
        with pytest.raises(UnsafePathError):
            backend.delete(path)
        with pytest.raises(UnsafePathError):
            backend.open_append(path)

    def test_copy_makes_an_identical_independent_object(self, backend: Backend) -> None:
        big = _pattern(_BIG, seed=11)
        backend.put("c/source", big)
        backend.put("c/target", b"replaced by the copy")
        backend.copy("c/source", "c/target")
        backend.copy("c/source", "c/sub/fresh")
        assert backend.read("c/target") == big
        assert backend.read("c/sub/fresh") == big
        backend.put("c/source", b"changed afterwards")
        assert backend.read("c/target") == big  # a copy, not a second name for one object
        assert sorted(backend.list("c/")) == ["c/source", "c/sub/fresh", "c/target"]

    def test_copy_of_an_appended_object(self, backend: Backend) -> None:
        appender = backend.open_append("c/appended")
        appender.append(b"first ")
        appender.append(b"second")
        appender.close()
        backend.copy("c/appended", "c/copied")
        assert backend.read("c/copied") == b"first second"
        appender = backend.open_append("c/appended")
        appender.append(b" third")
        appender.close()
        assert backend.read("c/copied") == b"first second"

    def test_copy_of_an_absent_object_raises_not_found(self, backend: Backend) -> None:
        with pytest.raises(NotFoundError):
            backend.copy("c/absent", "c/target")
        assert not backend.exists("c/target")

    def test_unsafe_paths_are_refused_in_copies(self, backend: Backend) -> None:
        backend.put("c/ok", b"x")
        for path in UNSAFE_PATHS:
            with pytest.raises(UnsafePathError):
                backend.copy("c/ok", path)
            with pytest.raises(UnsafePathError):
                backend.copy(path, "c/other")

    def test_move_renames_an_object_and_replaces_the_target(self, backend: Backend) -> None:
        big = _pattern(_BIG, seed=13)
        backend.put("m/source", big)
        backend.put("m/target", b"replaced by the move")
        backend.move("m/source", "m/target")
        assert backend.read("m/target") == big
        assert not backend.exists("m/source")
        backend.put("m/other", b"to a new folder")
        backend.move("m/other", "m/sub/moved")
        assert backend.read("m/sub/moved") == b"to a new folder"
        assert sorted(backend.list("m/")) == ["m/sub/moved", "m/target"]

    def test_move_of_an_appended_object(self, backend: Backend) -> None:
        appender = backend.open_append("m/appended")
        appender.append(b"first ")
        appender.append(b"second")
        appender.close()
        backend.move("m/appended", "m/final")
        assert backend.read("m/final") == b"first second"
        assert not backend.exists("m/appended")

    def test_move_of_an_absent_object_raises_not_found(self, backend: Backend) -> None:
        backend.put("m/kept", b"untouched")
        with pytest.raises(NotFoundError):
            backend.move("m/absent", "m/kept")
        assert backend.read("m/kept") == b"untouched"
        with pytest.raises(NotFoundError):
            backend.move("m/absent", "m/new")
        assert not backend.exists("m/new")

    def test_unsafe_paths_are_refused_in_moves(self, backend: Backend) -> None:
        backend.put("m/ok", b"x")
        for path in UNSAFE_PATHS:
            with pytest.raises(UnsafePathError):
                backend.move("m/ok", path)
            with pytest.raises(UnsafePathError):
                backend.move(path, "m/other")
        assert backend.read("m/ok") == b"x"

    def test_batch_commit_makes_every_put_readable(self, backend: Backend) -> None:
        big = _pattern(_BIG, seed=7)
        with backend.open_batch() as batch:
            batch.put("b/bytes", b"plain bytes")
            batch.put("b/bytearray", bytearray(b"a bytearray"))
            batch.put("b/view", memoryview(b"a memoryview"))
            batch.put("b/sub/stream", io.BytesIO(big))
            batch.commit()
        assert backend.read("b/bytes") == b"plain bytes"
        assert backend.read("b/bytearray") == b"a bytearray"
        assert backend.read("b/view") == b"a memoryview"
        assert backend.read("b/sub/stream") == big
        assert sorted(backend.list("b/")) == ["b/bytearray", "b/bytes", "b/sub/stream", "b/view"]

    def test_batch_put_replaces_an_existing_object(self, backend: Backend) -> None:
        backend.put("b/obj", b"old content")
        batch = backend.open_batch()
        batch.put("b/obj", b"new")
        batch.commit()
        assert backend.read("b/obj") == b"new"

    def test_batch_keeps_the_last_put_of_a_path(self, backend: Backend) -> None:
        batch = backend.open_batch()
        batch.put("b/twice", b"first")
        batch.put("b/twice", b"second")
        batch.commit()
        assert backend.read("b/twice") == b"second"
        assert list(backend.list("b/")) == ["b/twice"]

    def test_batch_puts_from_many_threads_are_all_committed(self, backend: Backend) -> None:
        batch = backend.open_batch()

        def writer(k: int) -> None:
            for j in range(15):
                batch.put(f"bt/{k}-{j}", _pattern(1000 + j, seed=k))

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batch.commit()
        assert len(list(backend.list("bt/"))) == 90
        assert backend.read("bt/5-14") == _pattern(1014, seed=5)

    def test_batch_objects_are_never_visible_partially_before_commit(self, backend: Backend) -> None:
        data = {f"bp/{i}": _pattern(300_000 + i, seed=i) for i in range(4)}
        batch = backend.open_batch()
        for path, content in data.items():
            batch.put(path, io.BytesIO(content))
        # Not committed yet: an object may be visible or not, but only whole.
        for path in backend.list("bp/"):
            assert backend.read(path) == data[path]
        batch.commit()
        assert {path: backend.read(path) for path in backend.list("bp/")} == data

    def test_an_aborted_batch_leaves_nothing_partial(self, backend: Backend) -> None:
        backend.put("ba/kept", b"untouched")
        with pytest.raises(RuntimeError), backend.open_batch() as batch:
            batch.put("ba/new", _pattern(200_000, seed=8))
            raise RuntimeError("the writer failed before commit")
        assert backend.read("ba/kept") == b"untouched"
        for path in backend.list("ba/"):
            assert path in ("ba/kept", "ba/new")
        if backend.exists("ba/new"):
            assert backend.read("ba/new") == _pattern(200_000, seed=8)

    @pytest.mark.parametrize("path", UNSAFE_PATHS)
    def test_unsafe_paths_are_refused_in_batches(self, backend: Backend, path: str) -> None:
        batch = backend.open_batch()
        with pytest.raises(UnsafePathError):
            batch.put(path, b"x")
        batch.abort()

    def test_a_backend_opened_from_a_url_pickles_and_reads_the_same_store(self, backend: Backend) -> None:
        backend.put("pk/obj", b"pickled")
        if opened_with(backend) is None:
            pytest.fail("open the backend under test with kara_core.url.open_backend so it pickles as its URL")
        clone = pickle.loads(pickle.dumps(backend))
        try:
            assert clone.read("pk/obj") == b"pickled"
        finally:
            clone.close()


class ReadOnlyBackendConformance(_Common):
    """Tests for read-only backends. Override ``source`` (writable) and ``backend``."""

    @pytest.fixture
    def source(self) -> Backend:
        """Override: a writable backend holding what ``backend`` serves."""
        pytest.fail("override the `source` fixture in your conformance subclass")

    @pytest.fixture(autouse=True)
    def _bind_source(self, source: Backend) -> Iterator[None]:
        self._source = source
        yield

    def _store(self, backend: Backend, path: str, data: bytes) -> None:
        self._source.put(path, data)

    def test_capabilities_say_read_only(self, backend: Backend) -> None:
        assert not backend.capabilities.writable
        assert not backend.capabilities.appendable

    @pytest.mark.parametrize("operation", ["put", "put_if_absent", "delete", "open_append"])
    def test_writes_raise_read_only_store_error_naming_the_url(self, backend: Backend, operation: str) -> None:
        args: tuple[object, ...] = ("w/obj", b"x") if operation in ("put", "put_if_absent") else ("w/obj",)
        with pytest.raises(ReadOnlyStoreError) as info:
            getattr(backend, operation)(*args)
        assert backend.url in str(info.value)

    def test_batch_puts_raise_read_only_store_error(self, backend: Backend) -> None:
        with pytest.raises(ReadOnlyStoreError), backend.open_batch() as batch:
            batch.put("w/obj", b"x")
            batch.commit()

    def test_objects_written_to_the_source_become_readable(self, backend: Backend) -> None:
        self._source.put("ro/late.bin", b"late")
        assert backend.read("ro/late.bin") == b"late"
        assert backend.size(os.path.join("ro", "late.bin")) == 4
