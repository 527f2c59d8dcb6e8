"""torch.distributed.checkpoint (DCP) storage in a kara store, with tensor-level dedup.

``dcp.save(state, storage_writer=KaraWriter(store, "ckpt", "run1", version="step-100"))``
writes a checkpoint as an ordinary directory version of ``obj/ckpt/run1``;
``dcp.load(state, storage_reader=KaraReader(store, "ckpt", "run1"))`` reads it back on any
world size.

Layout: every write item (a tensor shard, or a pickled object) is one file of the
version, ``__<rank>_<n>.distcp``, holding exactly what torch's ``FileSystemWriter`` would
write for it (``torch.save`` of the tensor, or the raw bytes), plus the pickled DCP
``.metadata`` whose ``storage_data`` points at those files. So ``load_directory`` of the
version gives a folder that torch's own ``FileSystemReader`` loads. Each file is a
content-addressed blob: an item unchanged since an earlier version of the key (frozen
layers, embeddings) is hashed but not uploaded again.

Every rank uploads its own items from memory (hashing in its writer threads) and makes
them durable before its ``write_data`` returns. A tensor item is ``torch.save``'d into a
collector that keeps the archive's small records and, instead of a copy of the tensor's
bytes, a view of the tensor's own memory: the parts are hashed where they are and written
with ``os.writev`` on file:// (no ``BytesIO`` copy of the tensor); only then does the coordinator's
``finish`` publish the version, through the object store's own publish. A rank that dies
before publishes nothing, and a rerun completes the same version.

The kara sidecar of the version records where the raw tensor bytes start inside each
item's file; :class:`KaraReader` then reads only the byte range of a tensor that this
rank's shards need (DCP resharding), with ranged reads in parallel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import json
import os
import pickle
import struct
import threading
import weakref
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.serialization as _serialization
from torch.distributed.checkpoint.filesystem import _StorageInfo, _StoragePrefix
from torch.distributed.checkpoint.metadata import (
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    ReadItem,
    SavePlan,
    SavePlanner,
    WriteItem,
    WriteItemType,
)
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.futures import Future

from kara_core.errors import BlobIntegrityError, ConfigurationError, CorruptDatasetError, NotFoundError
from kara_core.obj.hashing import Digests
from kara_core.obj.manifest import KeyLayout
from kara_core.obj.stream import BlobSink, SeekableReader, StoredBlob, VersionWriter
from kara_core.storage import KaraStorage

__all__ = ["KaraReader", "KaraWriter", "WriteStats", "parse_tensor_offsets"]

#: Name of DCP's global metadata file (the one ``FileSystemReader`` opens).
METADATA_FILE = ".metadata"
#: DCP format version written into the metadata (as torch's FileSystemWriter does).
DCP_VERSION = "1.0.0"
#: Field of the version's kara sidecar: item file -> offset of its raw tensor bytes.
SIDECAR_FIELD = "dcp_tensor_offsets"
#: Threads per rank for stores reached over a network (writes, reads): requests in flight.
DEFAULT_THREADS = 4
DEFAULT_READ_THREADS = 8
#: Bytes read at a time when a file of several items is checked against its sha1.
_VERIFY_CHUNK = 8 * 1024 * 1024


def _default_threads(store: KaraStorage, remote: int) -> int:
    """Threads per rank: ``remote`` for network stores, the cores per local rank for local ones.

    On a store with local files every thread is busy on a core (hashing, copying into
    or out of the page cache), so more threads than the cores this rank has only add
    switching and kernel contention (2 ranks on 2 cores, 1 GiB: a rank spent 0.81 s of
    system time with one thread, 0.95 s with two, 1.05 s with four; single runs).
    """
    if not store.backend.capabilities.local_path:
        return remote
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE") or 0)
    if ranks <= 0:
        ranks = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return max(1, min(remote, (os.cpu_count() or 1) // ranks))


def _as_store(store: KaraStorage | str) -> KaraStorage:
    if isinstance(store, KaraStorage):
        return store
    if isinstance(store, str):
        return KaraStorage(store)
    raise ConfigurationError(f"store must be a KaraStorage or a store URL, got {type(store).__name__}")


@dataclasses.dataclass(frozen=True)
class _ItemBlob:
    """What a rank reports for one written item: torch's storage info plus the blob."""

    info: _StorageInfo
    blob: StoredBlob
    tensor_offset: int | None


@dataclasses.dataclass
class WriteStats:
    """Blobs this rank's last ``write_data`` uploaded and the ones the store already had."""

    uploaded_blobs: int = 0
    uploaded_bytes: int = 0
    reused_blobs: int = 0


class _MemoryFile(SeekableReader):
    """A seekable read-only file over a buffer, for :mod:`zipfile` (no copy of the buffer)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__(len(view))
        self._view = view

    def _read_at(self, position: int, out: memoryview) -> None:
        out[:] = self._view[position : position + len(out)]


def _tensor_bytes_offset(saved: memoryview, nbytes: int) -> int | None:
    """Offset of the raw bytes of the one storage inside a ``torch.save`` archive.

    torch stores records uncompressed; the storage record is ``<archive>/data/0``. Its
    bytes start after the record's local zip header (30 bytes, then name and extra field).
    """
    with zipfile.ZipFile(_MemoryFile(saved)) as archive:
        records = [i for i in archive.infolist() if i.filename.partition("/")[2] == "data/0"]
    if len(records) != 1 or records[0].compress_type != zipfile.ZIP_STORED or records[0].file_size != nbytes:
        return None
    header = records[0].header_offset
    name_len, extra_len = struct.unpack_from("<HH", saved, header + 26)
    return header + 30 + name_len + extra_len


#: Tensors from this size on go to the store as a view of their memory (smaller ones are
#: copied with the archive's records: one buffer is cheaper than a view for them).
ZERO_COPY_MIN = 64 * 1024


class _ArchiveParts(io.RawIOBase):
    """The file ``torch.save`` writes one tensor's archive into, keeping it as parts.

    torch hands the storage record over as a view of the tensor's memory; that write is
    kept as a view of the tensor itself (valid as long as the tensor lives) when it has
    :data:`ZERO_COPY_MIN` bytes or more; every other write is copied.
    ``tensor_offset`` is where the tensor's bytes start (None if torch wrote them in
    pieces, then the archive is parsed for it).
    """

    def __init__(self, tensor: torch.Tensor) -> None:
        super().__init__()
        self._tensor = tensor
        self._nbytes = tensor.numel() * tensor.element_size()
        self._pointer = tensor.data_ptr()
        self._parts: list[bytes | memoryview] = []
        self._small = bytearray()
        self.size = 0
        self.tensor_offset: int | None = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        count = len(view)
        own = None
        if self.tensor_offset is None and count == self._nbytes and count and _address(view) == self._pointer:
            self.tensor_offset = self.size
            if count >= ZERO_COPY_MIN:
                own = _own_view(self._tensor)
        if own is None:
            self._small += view
        else:
            if self._small:
                self._parts.append(bytes(self._small))
                self._small = bytearray()
            self._parts.append(own)
        self.size += count
        return count

    def parts(self) -> list[bytes | memoryview]:
        """Everything written, in order."""
        if self._small:
            self._parts.append(bytes(self._small))
            self._small = bytearray()
        return self._parts


def _save_archive(tensor: torch.Tensor, archive: _ArchiveParts) -> None:
    """``torch.save(tensor, archive)`` without the zip CRC-32 of each record.

    torch computes a CRC-32 over every byte it saves (0.7 ms per MiB here, a fifth of a
    save) that ``torch.load`` never checks; the content hashes of the blob verify the
    bytes instead. The archive is then what ``torch.save`` writes after
    ``torch.serialization.set_crc32_options(False)`` (CRC fields zero), built with the
    same writer, without touching that process-wide setting. Where torch's internals do
    not have the expected shape, this is plain ``torch.save``.
    """
    if _NO_CRC_SAVE is None:
        torch.save(tensor, archive)
        return
    writer_class, save, alignment = _NO_CRC_SAVE
    writer = writer_class(archive, False, alignment())
    save(tensor, writer, pickle, _serialization.DEFAULT_PROTOCOL, False)
    writer.write_end_of_file()


def _no_crc_save() -> tuple[Any, Any, Any] | None:
    save = getattr(_serialization, "_save", None)
    alignment = getattr(_serialization, "_get_storage_alignment", None)
    writer_class = getattr(torch._C, "PyTorchFileWriter", None)
    if save is None or alignment is None or writer_class is None:
        return None
    try:
        names = list(inspect.signature(save).parameters)
    except (TypeError, ValueError):
        return None
    if names != ["obj", "zip_file", "pickle_module", "pickle_protocol", "_disable_byteorder_record"]:
        return None
    return writer_class, save, alignment


_NO_CRC_SAVE = _no_crc_save()


def _address(view: memoryview) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


def _own_view(tensor: torch.Tensor) -> memoryview | None:
    """A view of ``tensor``'s bytes that keeps it alive (None for dtypes numpy cannot view)."""
    try:
        return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
    except (RuntimeError, TypeError, ValueError):
        return None


class _ArchiveTemplates:
    """The records around the tensor bytes of item archives, kept per tensor layout.

    Written without CRC-32s (:func:`_save_archive`), the archive of a plain tensor is
    its records (the pickle, the byte order, the version, the serialization id, the zip
    headers and directory) around the storage's bytes, and those records depend on the
    tensor's dtype, size and strides, never on its values. The first tensor of each
    layout is serialized by torch; the next ones get the same records around a view of
    their own memory, without torch's pickler and zip writer (0.1-0.2 ms per item, on
    every item of every save). Anything else (tensor subclasses, attributes, quantized or
    conjugate tensors, small ones, a torch whose internals differ) is serialized as before.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}

    def parts(self, tensor: torch.Tensor) -> tuple[list[bytes | memoryview], int | None]:
        """The archive of ``tensor`` as parts, and where its bytes start (None if unknown)."""
        key = _layout_key(tensor)
        records = None if key is None else self._records.get(key)
        if records is not None:
            view = _own_view(tensor)
            if view is not None:
                head, tail = records
                return [head, view, tail], len(head)
        archive = _ArchiveParts(tensor)
        _save_archive(tensor, archive)
        parts = archive.parts()
        offset = archive.tensor_offset
        if (
            key is not None
            and len(parts) == 3
            and isinstance(parts[0], bytes)
            and isinstance(parts[1], memoryview)
            and isinstance(parts[2], bytes)
            and offset == len(parts[0])
        ):
            self._records.setdefault(key, (parts[0], parts[2]))
        return parts, offset


def _layout_key(tensor: torch.Tensor) -> tuple[Any, ...] | None:
    """What the records of a plain tensor's archive depend on (None: not a plain tensor)."""
    if (
        _NO_CRC_SAVE is None
        or type(tensor) is not torch.Tensor
        or tensor.layout != torch.strided
        or tensor.device.type != "cpu"
        or tensor.is_quantized
        or tensor.requires_grad
        or tensor.is_conj()
        or tensor.is_neg()
        or tensor.__dict__
        or tensor.numel() * tensor.element_size() < ZERO_COPY_MIN
        or torch._utils.get_tensor_metadata(tensor)
    ):
        return None
    return (tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()), tensor.storage_offset())


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor on CPU, contiguous, owning exactly its bytes (what is saved per item)."""
    tensor = tensor.detach().cpu()
    if (
        not tensor.is_contiguous()
        or tensor.storage_offset() != 0
        or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size()
    ):
        tensor = tensor.contiguous().clone()
    return tensor


class _Preparation:
    """What a rank's ``write_data`` needs before its first item, made ready in a thread.

    Started by ``set_up_storage_writer``, so that it runs while DCP plans the save and
    the ranks wait for each other's plans (gloo gathers): the coordinator's version
    (:meth:`~kara_core.obj.store.ObjectStore.open_version`, a lease), this rank's
    :class:`BlobSink` (a lease, taken before the listing it relies on) and then the
    previous version's blobs (its manifest, read after the lease, so garbage collection
    leaves those blobs alone). :meth:`close` releases whatever was not taken.
    """

    def __init__(self, writer: KaraWriter, coordinator: bool) -> None:
        self._writer = writer
        self._coordinator = coordinator
        self._version_writer: VersionWriter | None = None
        self._sink: BlobSink | None = None
        self._previous: dict[str, Digests] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kara-dcp-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        writer = self._writer
        try:
            if self._coordinator:
                self._version_writer = writer.store.objects.open_version(
                    writer.layout.namespace, writer.layout.key, writer.requested, overwrite=writer.overwrite
                )
            self._sink = BlobSink(writer.store.backend, writer.layout)
            self._previous = writer._previous_blobs()
        except BaseException as exc:  # noqa: BLE001 - raised again where the result is taken
            self._error = exc
        finally:
            del self._writer  # no reference from a finished thread back to the writer

    def _result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    def take_sink(self) -> tuple[BlobSink, dict[str, Digests]]:
        """This rank's sink (the caller closes it) and the previous version's blobs."""
        self._result()
        sink, self._sink = self._sink, None
        if sink is None:
            raise ConfigurationError("KaraWriter.write_data runs once per set_up_storage_writer")
        return sink, self._previous

    def take_version_writer(self) -> VersionWriter | None:
        """The coordinator's open version (the caller publishes or aborts it)."""
        self._result()
        version_writer, self._version_writer = self._version_writer, None
        return version_writer

    def close(self) -> None:
        """Release the sink and abort the version not taken yet."""
        # The writer's finalizer runs this; in the thread itself when the thread's
        # reference was the last one (a writer dropped while it prepares).
        if threading.current_thread() is not self._thread:
            self._thread.join()
        try:
            if self._sink is not None:
                self._sink.close()
        finally:
            self._sink = None
            if self._version_writer is not None:
                self._version_writer.abort()
                self._version_writer = None


class KaraWriter(StorageWriter):
    """A DCP ``StorageWriter`` saving into version ``version`` of ``obj/<namespace>/<key>``.

    ``store``: a :class:`~kara_core.KaraStorage` or a store URL. ``version=None`` takes
    the next free number (the coordinator's ``version`` attribute holds it after the
    save); a ``checkpoint_id`` passed to ``dcp.save`` names the version instead. An
    existing version raises :class:`~kara_core.errors.VersionExistsError` unless
    ``overwrite=True``. ``threads``: serialize-hash-upload threads per rank (default:
    4 on network stores, the cores per local rank on stores with local files).
    ``stats`` tells what the last save of this rank uploaded.
    """

    def __init__(
        self,
        store: KaraStorage | str,
        namespace: str,
        key: str,
        version: Any = None,
        *,
        overwrite: bool = False,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.store = _as_store(store)
        self.layout = KeyLayout(namespace, key)
        self.requested = None if version is None else str(version)
        self.overwrite = overwrite
        self.threads = _check_threads(threads)
        self.version: str | None = None
        self.stats = WriteStats()
        self.is_coordinator = False
        self.rank = 0
        self._version_writer: VersionWriter | None = None
        self._preparation: _Preparation | None = None
        self._release_preparation: weakref.finalize | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Process-based async saves pickle the writer: an open version stays behind.
        state = dict(self.__dict__)
        state["_version_writer"] = None
        state["_preparation"] = None
        state["_release_preparation"] = None
        return state

    # -- StorageWriter ---------------------------------------------------------------

    def reset(self, checkpoint_id: Any = None) -> None:
        """Start a new save; a ``checkpoint_id`` names its version."""
        if checkpoint_id is not None:
            self.requested = str(checkpoint_id)
        self.version = None
        self.stats = WriteStats()
        self._drop_version_writer()

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Any) -> bool:
        """A checkpoint id is a version name: any non-empty string without '/'."""
        name = str(checkpoint_id)
        return bool(name) and "/" not in name and "://" not in name

    def storage_meta(self) -> StorageMeta | None:
        """The version name (or None for the next number) as the checkpoint id."""
        return StorageMeta(checkpoint_id=self.requested)

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        """Remember the role and start preparing ``write_data`` in a thread (:class:`_Preparation`).

        The coordinator fails here, early, if the version exists (and ``overwrite`` is
        not set); its version is opened in the thread, along with this rank's lease and
        the read of the previous version's manifest, while DCP plans the save.
        """
        self.is_coordinator = is_coordinator
        self.rank = int(kwargs.get("rank") or 0)
        self._drop_version_writer()
        if is_coordinator:
            self.store.objects.check_new_version(self.layout, self.requested, self.overwrite)
        self._start_preparation(is_coordinator)

    def _start_preparation(self, coordinator: bool) -> _Preparation:
        preparation = _Preparation(self, coordinator)
        self._preparation = preparation
        # A save that fails before write_data or finish releases the leases when the
        # writer goes away (or at the next reset / set-up).
        self._release_preparation = weakref.finalize(self, preparation.close)
        return preparation

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        """Nothing to add locally."""
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        """Give each rank its own file prefix ``__<rank>_``."""
        return [dataclasses.replace(plan, storage_data=_StoragePrefix(f"__{i}_")) for i, plan in enumerate(plans)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        """Serialize, hash and upload this rank's items in parallel; durable on return."""
        prefix: _StoragePrefix = plan.storage_data
        names = {id(item): f"{prefix.prefix}{n}.distcp" for n, item in enumerate(plan.items)}
        # Large items first, so the threads end together.
        order = sorted(plan.items, key=_item_bytes, reverse=True)
        preparation = self._preparation or self._start_preparation(False)
        sink, previous = preparation.take_sink()
        templates = _ArchiveTemplates()
        with sink:
            threads = self.threads or _default_threads(self.store, DEFAULT_THREADS)
            results = _run_threads(
                order,
                lambda item: self._write_item(
                    sink, planner, item, names[id(item)], previous.get(names[id(item)]), templates
                ),
                threads,
            )
            sink.commit()
            self.stats = WriteStats(sink.uploaded_blobs, sink.uploaded_bytes, sink.reused_blobs)
        future: Future[list[WriteResult]] = Future()
        future.set_result(results)
        return future

    def _previous_blobs(self) -> dict[str, Digests]:
        """File name -> blob of the key's latest version, on stores with local files (else empty).

        An item whose file of the previous save is still in the page cache is compared
        with it byte for byte instead of hashed (:meth:`BlobSink.store_parts`, ``like``):
        an unchanged item then costs a ``memcmp``, not a sha1 pass. Taken after the
        sink's lease, so garbage collection leaves those blobs alone meanwhile.
        """
        if not self.store.backend.capabilities.local_path:
            return {}
        objects = self.store.objects
        namespace, key = self.layout.namespace, self.layout.key
        try:
            manifest = objects.read_manifest(namespace, key, objects.resolve_version(namespace, key, "latest"))
        except NotFoundError:
            return {}
        return {
            entry.relpath: Digests(entry.md5, entry.sha1, None)
            for entry in manifest.files
            if entry.file == f"{entry.md5}_{entry.sha1}"
        }

    def _write_item(
        self,
        sink: BlobSink,
        planner: SavePlanner,
        item: WriteItem,
        name: str,
        like: Digests | None,
        templates: _ArchiveTemplates,
    ) -> WriteResult:
        data = planner.resolve_data(item)
        tensor_offset = None
        if item.type == WriteItemType.BYTE_IO:
            payload = data.getbuffer()
            parts = [payload]
        else:
            tensor = _compact(data)
            parts, tensor_offset = templates.parts(tensor)
            if tensor_offset is None:
                joined = memoryview(b"".join(parts))
                tensor_offset = _tensor_bytes_offset(joined, tensor.numel() * tensor.element_size())
                parts = [joined]
        stored = sink.store_parts(parts, like=like)
        info = _StorageInfo(name, 0, stored.size)
        return WriteResult(
            index=item.index, size_in_bytes=stored.size, storage_data=_ItemBlob(info, stored, tensor_offset)
        )

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        """Publish the version: ``.metadata`` plus every rank's (durable) item files."""
        if self._preparation is not None and self._version_writer is None:
            self._version_writer = self._preparation.take_version_writer()
        writer = self._version_writer
        if writer is None:
            raise ConfigurationError("KaraWriter.finish runs on the coordinator after set_up_storage_writer")
        try:
            items = [result.storage_data for rank_results in results for result in rank_results]
            metadata.version = DCP_VERSION
            metadata.storage_data = {
                result.index: result.storage_data.info for rank_results in results for result in rank_results
            }
            metadata.storage_meta = self.storage_meta()
            for item in items:
                writer.add_blob(item.info.relative_path, item.blob)
            writer.write_file(METADATA_FILE, pickle.dumps(metadata))
            offsets = {item.info.relative_path: item.tensor_offset for item in items if item.tensor_offset is not None}
            self.version = writer.publish(sidecar_extra={SIDECAR_FIELD: offsets})
        finally:
            self._drop_version_writer()

    def _drop_version_writer(self) -> None:
        """Abort the open version and release the leases of the preparation, if any."""
        try:
            if self._release_preparation is not None:
                self._release_preparation()
        finally:
            self._preparation = None
            self._release_preparation = None
            if self._version_writer is not None:
                self._version_writer.abort()
                self._version_writer = None


def parse_tensor_offsets(raw: bytes | None, where: str) -> dict[str, int]:
    """Read the item file -> tensor byte offset map of a version's kara sidecar.

    Versions not written by :class:`KaraWriter` have none (empty map: whole items are
    read). Anything malformed raises :class:`~kara_core.errors.CorruptDatasetError`.
    """
    if not raw:
        return {}
    try:
        sidecar = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptDatasetError(where, None, f"not valid JSON: {exc}") from None
    field = sidecar.get(SIDECAR_FIELD) if isinstance(sidecar, dict) else None
    if field is None:
        return {}
    if not isinstance(field, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in field.values()
    ):
        raise CorruptDatasetError(where, None, f"{SIDECAR_FIELD} must map file names to byte offsets")
    return dict(field)


def _item_bytes(item: WriteItem) -> int:
    if item.tensor_data is None:
        return 0
    return item.tensor_data.size.numel() * torch.tensor([], dtype=item.tensor_data.properties.dtype).element_size()


def _check_threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigurationError(f"threads must be a positive integer or None, got {threads!r}")
    return threads


def _run_threads(items: list[Any], fn: Any, threads: int) -> list[Any]:
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="kara-dcp") as pool:
        return list(pool.map(fn, items))


class KaraReader(StorageReader):
    """A DCP ``StorageReader`` loading version ``version`` of ``obj/<namespace>/<key>``.

    Works on versions written by :class:`KaraWriter` and on folders of torch's
    ``FileSystemWriter`` saved with ``save_directory``. Each rank reads only the items
    (and, for :class:`KaraWriter` versions, only the byte ranges inside them) that its
    shards need, with ``threads`` reads in flight (default: 8 on network stores, the
    cores per local rank on stores with local files). Where the needed bytes of a
    tensor are one contiguous range and the destination tensor is contiguous, they are
    read straight into the destination's memory (``os.preadv`` from the blob on
    file://): no intermediate buffer. A ``checkpoint_id`` passed to ``dcp.load`` names
    the version.

    The ``.metadata`` file is always checked against its sha1. With ``verify=True``
    every file this rank reads from is too, as ``load_directory`` checks a download: a
    file holding one item (the layout of :class:`KaraWriter`) is read whole once and
    hashed (straight into a destination that takes the whole stored tensor, else through
    a buffer); a file of several items (``FileSystemWriter``'s) is streamed through sha1
    once before its items are read. A file that does not match raises
    :class:`~kara_core.errors.BlobIntegrityError` and the load fails. Without it (the
    default, as torch's ``FileSystemReader`` and MosaicML Streaming's
    ``validate_hash=None``) only sizes are checked: verification reads whole files even
    where resharding needs part of one, and costs a sha1 pass (0.6 ms per MiB here) that
    a load from the page cache does not otherwise pay.
    """

    def __init__(
        self,
        store: KaraStorage | str,
        namespace: str,
        key: str,
        version: Any = "latest",
        *,
        threads: int | None = None,
        verify: bool = False,
    ) -> None:
        super().__init__()
        self.store = _as_store(store)
        self.layout = KeyLayout(namespace, key)
        self.requested = str(version)
        self.threads = _check_threads(threads)
        if not isinstance(verify, bool):
            raise ConfigurationError(f"verify must be True or False, got {verify!r}")
        self.verify = verify
        self._sha1: dict[str, str] = {}
        self._items_in: dict[str, int] = {}
        self._streamed: dict[str, threading.Lock] = {}
        self._checked: set[str] = set()
        self.version: str | None = None
        self.bytes_read = 0
        self._blobs: dict[str, tuple[str, int]] = {}
        self._offsets: dict[str, int] = {}
        self._storage_data: dict[MetadataIndex, _StorageInfo] = {}
        self._metadata: Metadata | None = None
        self._count_lock = threading.Lock()

    def reset(self, checkpoint_id: Any = None) -> None:
        """Start a new load; a ``checkpoint_id`` names its version."""
        if checkpoint_id is not None:
            self.requested = str(checkpoint_id)
        self.bytes_read = 0

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Any) -> bool:
        """A checkpoint id is a version name: any non-empty string without '/'."""
        return KaraWriter.validate_checkpoint_id(checkpoint_id)

    def _open_version(self) -> None:
        objects = self.store.objects
        namespace, key = self.layout.namespace, self.layout.key
        self.version = objects.resolve_version(namespace, key, self.requested)
        manifest = objects.read_manifest(namespace, key, self.version)
        self._blobs = {entry.relpath: (self.layout.blob(entry.file), entry.size) for entry in manifest.files}
        self._sha1 = {entry.relpath: entry.sha1 for entry in manifest.files}
        sidecar = self.layout.sidecar(self.version)
        self._offsets = parse_tensor_offsets(self.store.backend.read_if_exists(sidecar), f"{self.store.url}/{sidecar}")

    def _blob_of(self, relpath: str) -> tuple[str, int]:
        try:
            return self._blobs[relpath]
        except KeyError:
            raise CorruptDatasetError(
                f"{self.store.url}/{self.layout.root}",
                None,
                f"checkpoint file {relpath!r} is not in version {self.version!r}",
            ) from None

    def _short(self, blob: str, relpath: str) -> CorruptDatasetError:
        return CorruptDatasetError(
            f"{self.store.url}/{blob}", None, f"checkpoint file {relpath!r} is shorter than its manifest says"
        )

    def _read(self, relpath: str, start: int, end: int) -> bytes:
        blob, size = self._blob_of(relpath)
        data = self.store.backend.read(blob, start, min(end, size))
        if len(data) != min(end, size) - start:
            raise self._short(blob, relpath)
        self._count(len(data))
        return data

    def _read_into(self, relpath: str, start: int, out: memoryview) -> None:
        """Fill ``out`` with the bytes of ``relpath`` from ``start``: straight from the blob's file when local."""
        blob, size = self._blob_of(relpath)
        if start + len(out) > size:
            raise self._short(blob, relpath)
        backend = self.store.backend
        local = backend.local_path(blob) if backend.capabilities.local_path else None
        if local is None:
            data = backend.read(blob, start, start + len(out))
            if len(data) != len(out):
                raise self._short(blob, relpath)
            out[:] = data
        else:
            try:
                fd = os.open(local, os.O_RDONLY)
            except FileNotFoundError:
                raise CorruptDatasetError(f"{self.store.url}/{blob}", None, "the blob is missing") from None
            try:
                done = 0
                while done < len(out):
                    n = os.preadv(fd, [out[done:]], start + done)
                    if n == 0:
                        raise self._short(blob, relpath)
                    done += n
            finally:
                os.close(fd)
        self._count(len(out))

    def _count(self, n: int) -> None:
        with self._count_lock:
            self.bytes_read += n

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """Read the version's ``.metadata`` (rank-local metadata is not written by kara)."""
        if kwargs.get("rank") is not None:
            raise ConfigurationError("kara checkpoints have one global .metadata, no rank-local ones")
        self._open_version()
        if METADATA_FILE not in self._blobs:
            raise CorruptDatasetError(
                f"{self.store.url}/{self.layout.root}", None, f"version {self.version!r} has no {METADATA_FILE} file"
            )
        metadata = pickle.loads(self._checked_whole(METADATA_FILE))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        self._metadata = metadata
        return metadata

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        """Keep the item locations of ``metadata``."""
        if metadata.storage_data is None:
            raise CorruptDatasetError(f"{self.store.url}/{self.layout.root}", None, "the metadata has no storage_data")
        if not self._blobs:
            self._open_version()
        self._storage_data = metadata.storage_data
        self._metadata = metadata
        self._items_in = {}
        for info in self._storage_data.values():
            self._items_in[info.relative_path] = self._items_in.get(info.relative_path, 0) + 1
        self._streamed = {relpath: threading.Lock() for relpath in self._items_in}
        self._checked = set()

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        """Nothing to change."""
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        """Nothing to change."""
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        """Fetch the needed bytes in parallel, into each destination tensor where possible.

        Destinations are resolved (and committed) in this thread, at most twice as many
        at a time as there are threads, so a planner that allocates them keeps its
        memory bounded.
        """
        threads = self.threads or _default_threads(self.store, DEFAULT_READ_THREADS)
        items = iter(plan.items)
        with ThreadPoolExecutor(threads, thread_name_prefix="kara-dcp-read") as pool:
            pending: dict[Any, tuple[ReadItem, torch.Tensor | None]] = {}

            def submit_next() -> None:
                item = next(items, None)
                if item is None:
                    return
                target = None if item.type == LoadItemType.BYTE_IO else planner.resolve_tensor(item).detach()
                pending[pool.submit(self._fetch, item, target)] = (item, target)

            for _ in range(2 * threads):
                submit_next()
            while pending:
                done = next(as_completed(pending))
                item, target = pending.pop(done)
                value = done.result()
                if target is None:
                    planner.load_bytes(item, io.BytesIO(value))
                else:
                    if value is not None:
                        self._copy_into(item, target, value)
                    planner.commit_tensor(item, target)
                submit_next()
        future: Future[None] = Future()
        future.set_result(None)
        return future

    def _copy_into(self, item: ReadItem, target: torch.Tensor, value: torch.Tensor) -> None:
        if target.size() != value.size():
            raise CorruptDatasetError(
                f"{self.store.url}/{self.layout.root}",
                None,
                f"{item.storage_index.fqn}: stored shard has size {tuple(value.size())}, "
                f"expected {tuple(target.size())}",
            )
        target.copy_(value)

    def _checked_whole(self, relpath: str) -> bytes:
        """The whole of ``relpath``, checked against its sha1."""
        data = self._read(relpath, 0, self._blob_of(relpath)[1])
        self._check_sha1(relpath, hashlib.sha1(data, usedforsecurity=False))
        return data

    def _check_sha1(self, relpath: str, hasher: Any) -> None:
        if hasher.hexdigest() != self._sha1[relpath]:
            blob = self._blob_of(relpath)[0]
            raise BlobIntegrityError(
                f"{self.store.url}/{blob} ({relpath!r} of version {self.version!r}) does not match its sha1: "
                "the stored copy is corrupted (run `kara verify`); the load stops"
            )

    def _check_streamed(self, relpath: str) -> None:
        """Stream ``relpath`` through sha1 once (the first reader of it does; the others wait)."""
        with self._streamed[relpath]:
            if relpath in self._checked:
                return
            hasher, size = hashlib.sha1(usedforsecurity=False), self._blob_of(relpath)[1]
            for start in range(0, size, _VERIFY_CHUNK):
                hasher.update(self._read(relpath, start, min(size, start + _VERIFY_CHUNK)))
            self._check_sha1(relpath, hasher)
            self._checked.add(relpath)

    def _fetch_checked(self, item: ReadItem, target: torch.Tensor | None, info: _StorageInfo) -> Any:
        """:meth:`_fetch` of a file of one item: read whole once, checked, the item taken from it.

        A whole stored chunk bound for a contiguous tensor like it is read straight into
        the tensor (the records around it apart) and hashed there: no copy.
        """
        if target is not None and self._read_checked_into(item, target, info):
            return None
        data = memoryview(self._checked_whole(info.relative_path))
        piece = data[info.offset : info.offset + info.length]
        if target is None:
            return bytes(piece)
        offset, chunk = self._offsets.get(info.relative_path), self._chunk_of(item.storage_index)
        if offset is None or chunk is None:
            tensor = torch.load(io.BytesIO(piece), map_location="cpu", weights_only=True)
        else:
            dtype, sizes = chunk
            count = int(np.prod(sizes, dtype=np.int64))
            start = info.offset + offset
            # A writable copy of the stored chunk (torch wants to own what it views).
            tensor = torch.empty(tuple(sizes), dtype=dtype)
            tensor.view(-1).view(torch.uint8).numpy()[:] = np.frombuffer(
                data, dtype=np.uint8, count=count * tensor.element_size(), offset=start
            )
        for dim, (begin, length) in enumerate(zip(item.storage_offsets, item.lengths, strict=True)):
            tensor = tensor.narrow(dim, begin, length)
        return tensor

    def _read_checked_into(self, item: ReadItem, target: torch.Tensor, info: _StorageInfo) -> bool:
        """Read the item's file into ``target`` and check it, if ``target`` takes the whole
        stored chunk as it is stored; False (nothing read) otherwise."""
        relpath = info.relative_path
        offset, chunk = self._offsets.get(relpath), self._chunk_of(item.storage_index)
        if offset is None or chunk is None:
            return False
        dtype, sizes = chunk
        whole = not any(item.storage_offsets) and list(item.lengths) == list(sizes) == list(target.size())
        if not (whole and target.dtype == dtype and target.is_contiguous() and target.device.type == "cpu"):
            return False
        view = _own_view(target)
        if view is None:
            return False
        size, start = self._blob_of(relpath)[1], info.offset + offset
        hasher = hashlib.sha1(self._read(relpath, 0, start) if start else b"", usedforsecurity=False)
        self._read_into(relpath, start, view)
        hasher.update(view)
        if start + len(view) < size:
            hasher.update(self._read(relpath, start + len(view), size))
        self._check_sha1(relpath, hasher)
        return True

    def _fetch(self, item: ReadItem, target: torch.Tensor | None) -> Any:
        """The item's bytes, or its tensor; None once the bytes are read into ``target`` itself."""
        info = self._storage_data[item.storage_index]
        if self.verify:
            if self._items_in[info.relative_path] == 1:
                return self._fetch_checked(item, target, info)
            self._check_streamed(info.relative_path)
        if target is None:
            return self._read(info.relative_path, info.offset, info.offset + info.length)
        offset = self._offsets.get(info.relative_path)
        chunk = self._chunk_of(item.storage_index)
        if offset is not None and chunk is not None:
            dtype, sizes = chunk
            return self._read_region(info, offset, dtype, sizes, item, target)
        raw = self._read(info.relative_path, info.offset, info.offset + info.length)
        tensor = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        for dim, (start, length) in enumerate(zip(item.storage_offsets, item.lengths, strict=True)):
            tensor = tensor.narrow(dim, start, length)
        return tensor

    def _chunk_of(self, index: MetadataIndex) -> tuple[torch.dtype, torch.Size] | None:
        meta = self._metadata.state_dict_metadata.get(index.fqn) if self._metadata else None
        if not isinstance(meta, TensorStorageMetadata):
            return None
        for chunk in meta.chunks:
            if tuple(chunk.offsets) == tuple(index.offset or ()):
                return meta.properties.dtype, chunk.sizes
        return None

    def _read_region(
        self,
        info: _StorageInfo,
        offset: int,
        dtype: torch.dtype,
        sizes: torch.Size,
        item: ReadItem,
        target: torch.Tensor,
    ) -> torch.Tensor | None:
        """Read only the bytes spanning the requested box of a contiguous stored chunk.

        When the box is one contiguous range and ``target`` a contiguous tensor of the
        same dtype and size, the bytes go straight into ``target`` (returns None);
        otherwise into a buffer, returned as a strided view of the box.
        """
        lengths = list(item.lengths)
        element = torch.tensor([], dtype=dtype).element_size()
        if any(n == 0 for n in lengths):
            return torch.empty(lengths, dtype=dtype)
        strides = [1] * len(sizes)
        for dim in range(len(sizes) - 2, -1, -1):
            strides[dim] = strides[dim + 1] * sizes[dim + 1]
        first = sum(o * s for o, s in zip(item.storage_offsets, strides, strict=True))
        last = sum((o + n - 1) * s for o, n, s in zip(item.storage_offsets, lengths, strides, strict=True))
        start = info.offset + offset + first * element
        count = last - first + 1
        if (
            count == target.numel()
            and list(target.size()) == lengths
            and target.dtype == dtype
            and target.is_contiguous()
            and target.device.type == "cpu"
        ):
            view = _own_view(target)
            if view is not None:
                self._read_into(info.relative_path, start, view)
                return None
        buffer = torch.empty(count, dtype=dtype)
        self._read_into(info.relative_path, start, memoryview(buffer.view(torch.uint8).numpy()))
        return buffer.as_strided(lengths, strides)
