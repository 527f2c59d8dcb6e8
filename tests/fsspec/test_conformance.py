"""kara-fsspec passes the backend, row-dataset and directory-version conformance suites on
S3 (moto's server, through s3fs), Azure Blob (Azurite, through adlfs), GCS
(gcp-storage-emulator, through gcsfs), and fsspec's memory and local filesystems."""

from __future__ import annotations

import pickle
import types

import pytest
from kara_fsspec import FsspecBackend

from kara_core.backend import Backend
from kara_core.errors import BackendError, UnsafePathError
from kara_core.testing import BackendConformance
from kara_core.testing.obj import ObjectConformance
from kara_core.testing.row import RowConformance
from kara_core.url import opened_with


class TestS3Backend(BackendConformance):
    @pytest.fixture
    def backend(self, s3_backend: Backend) -> Backend:
        return s3_backend


class TestS3Rows(RowConformance):
    @pytest.fixture
    def backend(self, s3_backend: Backend) -> Backend:
        return s3_backend


class TestS3Objects(ObjectConformance):
    @pytest.fixture
    def backend(self, s3_backend: Backend) -> Backend:
        return s3_backend


class TestAzureBackend(BackendConformance):
    @pytest.fixture
    def backend(self, azure_backend: Backend) -> Backend:
        return azure_backend

    def test_a_backslash_is_a_plain_character_of_a_name(self, backend: Backend) -> None:
        # Azure Blob Storage (Azurite as the service) stores 'a\\..\\c' as 'a/../c': the
        # name is refused, with the reason, before anything is sent.
        for path in ("bs/a\\b", "bs/a\\..\\c"):
            with pytest.raises(UnsafePathError, match="Azure Blob Storage"):
                backend.put(path, b"one")
            with pytest.raises(UnsafePathError, match="Azure Blob Storage"):
                backend.read(path)
        assert list(backend.list("bs/")) == []


class TestAzureRows(RowConformance):
    @pytest.fixture
    def backend(self, azure_backend: Backend) -> Backend:
        return azure_backend


class TestAzureObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, azure_backend: Backend) -> Backend:
        return azure_backend


# Faults of gcp-storage-emulator (not of GCS, nor of kara), each found in its source:
#: storage.py's Storage._norm replaces every backslash of an object name with '/' (and
#: refuses '..' segments with a ValueError, answered as a dropped connection); GCS keeps a
#: backslash as a plain character of the name.
EMULATOR_BACKSLASH = "gcp-storage-emulator turns '\\' in object names into '/' (storage.py Storage._norm); GCS does not"
#: server.py's _read_data parses gcsfs's one-request (multipart/related) uploads with
#: email.parser, which takes a last '\r' of the content for part of the closing delimiter:
#: the stored object is one byte short. The test's fourth object ends with '\r'.
EMULATOR_TRAILING_CR = (
    "gcp-storage-emulator drops a last '\\r' byte of an object uploaded in one request "
    "(server.py _read_data parses the multipart upload with email.parser)"
)


class TestGCSBackend(BackendConformance):
    @pytest.fixture
    def backend(self, gcs_backend: Backend) -> Backend:
        return gcs_backend

    def test_put_if_absent_has_exactly_one_winner_under_contention(self, backend: Backend) -> None:
        # gcp-storage-emulator ignores ifGenerationMatch=0 (its handlers never read it), so
        # it cannot keep racing creators apart; GCS refuses the second create (412). The
        # race itself would fail only sometimes (not a strict xfail), so this checks
        # what kara must do on such a server instead: its probe finds the precondition
        # ignored, creates become best effort, and kara says so.
        fs = backend.fs  # type: ignore[attr-defined]
        root = backend.root  # type: ignore[attr-defined]
        fs.pipe_file(f"{root}/fault/obj", b"1", mode="create")
        fs.pipe_file(f"{root}/fault/obj", b"2", mode="create")  # accepted: the emulator's fault
        assert fs.cat_file(f"{root}/fault/obj") == b"2"
        with pytest.warns(RuntimeWarning, match="best effort"):
            assert backend.put_if_absent("race/obj", b"winner") is True
        assert not backend.capabilities.atomic_create
        assert backend.put_if_absent("race/obj", b"loser") is False
        assert backend.read("race/obj") == b"winner"

    @pytest.mark.xfail(strict=True, raises=BackendError, reason=EMULATOR_BACKSLASH)
    def test_a_backslash_is_a_plain_character_of_a_name(
        self, backend: Backend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The emulator drops the connection on the '..' segment, and gcsfs retries that
        # six times with exponential back-off (30 s and more of sleeping) before kara
        # reports it: gcsfs's retry loop here gets back-offs of no time.
        import gcsfs.retry

        real_sleep = gcsfs.retry.asyncio.sleep
        monkeypatch.setattr(gcsfs.retry, "asyncio", types.SimpleNamespace(sleep=lambda delay: real_sleep(0)))
        super().test_a_backslash_is_a_plain_character_of_a_name(backend)

    @pytest.mark.xfail(strict=True, raises=AssertionError, reason=EMULATOR_TRAILING_CR)
    def test_batch_objects_are_never_visible_partially_before_commit(self, backend: Backend) -> None:
        super().test_batch_objects_are_never_visible_partially_before_commit(backend)


class TestGCSRows(RowConformance):
    @pytest.fixture
    def backend(self, gcs_backend: Backend) -> Backend:
        return gcs_backend


class TestGCSObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, gcs_backend: Backend) -> Backend:
        return gcs_backend


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def backend(self, memory_backend: Backend) -> Backend:
        return memory_backend

    def test_a_backend_opened_from_a_url_pickles_and_reads_the_same_store(self, backend: Backend) -> None:
        # memory:// belongs to kara's example memory plugin, so this store is opened with
        # open_fsspec, not open_backend: it pickles as "open_fsspec(url, options)" (the
        # backend's own __reduce_ex__), and unpickled it is fsspec's store again, not
        # kara-memory's. The stores opened by URL (S3, Azure, local) run the suite's test.
        backend.put("pk/obj", b"pickled")
        assert opened_with(backend) is None
        clone = pickle.loads(pickle.dumps(backend))
        try:
            assert isinstance(clone, FsspecBackend) and clone.root == backend.root
            assert clone.read("pk/obj") == b"pickled"
        finally:
            clone.close()


class TestMemoryRows(RowConformance):
    @pytest.fixture
    def backend(self, memory_backend: Backend) -> Backend:
        return memory_backend


class TestMemoryObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, memory_backend: Backend) -> Backend:
        return memory_backend


class TestLocalBackend(BackendConformance):
    @pytest.fixture
    def backend(self, local_backend: Backend) -> Backend:
        return local_backend


class TestLocalRows(RowConformance):
    @pytest.fixture
    def backend(self, local_backend: Backend) -> Backend:
        return local_backend


class TestLocalObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, local_backend: Backend) -> Backend:
        return local_backend
