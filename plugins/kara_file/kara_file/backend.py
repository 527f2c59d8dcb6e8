"""The file:// backend: atomic puts, durable appends, mmap-able local paths."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO

from kara_core.backend import Backend, Batch, Capabilities, check_path
from kara_core.errors import ConfigurationError, NotFoundError, UnsafePathError
from kara_core.localdisk import raise_disk_error, write_file

if TYPE_CHECKING:
    from kara_core.url import StoreURL

    from .options import FileOptions

__all__ = ["FileAppender", "FileBackend", "FileBatch", "FileOptions"]


def __getattr__(name: str) -> Any:
    # FileOptions is a pydantic model: imported when asked for, not to open a store.
    if name == "FileOptions":
        from .options import FileOptions

        return FileOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TMP_MARK = ".kara-tmp-"
#: What a temporary name adds to the name it stands for (see :func:`_temp_path`).
_TEMP_EXTRA = len(".") + len(_TMP_MARK) + 32
#: The longest name and path POSIX file systems take (ext4, xfs, tmpfs, APFS: 255 and 4096 bytes).
_NAME_MAX, _PATH_MAX = 255, 4096

#: FileOptions' fields and defaults (kara_file.options; tests/fuzz checks they agree).
_DEFAULTS = {"fsync": True, "direct_io": "auto"}


def plain_file_options(options: dict[str, Any]) -> dict[str, Any] | None:
    """What :class:`~kara_file.options.FileOptions` makes of ``options``, when they are plain.

    Plain: only known names, each with a value the model keeps as it is (``fsync`` a
    bool, ``direct_io`` a bool or ``"auto"``). Anything else returns None: the model then
    converts or refuses it, with its own error.
    """
    values = dict(_DEFAULTS)
    for name, value in options.items():
        kind = type(value)
        if not (kind is bool or (name == "direct_io" and kind is str and value == "auto")) or name not in values:
            return None
        values[name] = value
    return values


#: fdatasync(2) where the platform has it (not macOS): fsync without the timestamps.
_fdatasync = getattr(os, "fdatasync", os.fsync)

#: Objects of a batch from this size on start their writeback when written.
_EARLY_WRITEBACK_MIN = 1024 * 1024

#: Appended bytes after which an appender starts their writeback in the background.
_WRITEBACK_CHUNK = 4 * 1024 * 1024


class FileAppender:
    """Appends to one file; ``flush`` makes the appended bytes durable (fdatasync)."""

    def __init__(self, path: str, fsync: bool, url: str = "") -> None:
        #: The store's URL, for errors (default: the file's folder).
        self.url = url or "file://" + os.path.dirname(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self._position = os.fstat(self._fd).st_size
        self._fsync = fsync
        self._dirty = False
        self._written_back = self._position
        self.path = path

    @property
    def position(self) -> int:
        return self._position

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Append all of ``data``, or nothing: a failed append cuts its bytes off again,
        so the file ends where it did and a retry appends at the same place."""
        if self._fd < 0:
            raise ValueError(f"append to closed file {self.path}")
        view = memoryview(data)
        start = self._position
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self._position += written
        except OSError as exc:
            if self._position != start:
                try:
                    os.ftruncate(self._fd, start)
                    self._position = start
                except OSError:
                    # The cut failed too: the position stays where the file ends.
                    pass
            raise_disk_error(exc, f"append {len(data)} bytes to {self.path}", self.url)
            raise
        self._dirty = True
        if self._fsync and self._position - self._written_back >= _WRITEBACK_CHUNK:
            # Start writing back what is appended while the writer goes on, so the fsync
            # of the next flush or close finds most of the data already on disk.
            _start_writeback(self._fd, self._written_back, self._position - self._written_back)
            self._written_back = self._position

    def flush(self) -> None:
        if self._fd >= 0 and self._dirty and self._fsync:
            # The appended bytes and the size that covers them (fdatasync skips only
            # timestamps, which no reader needs).
            try:
                _fdatasync(self._fd)
            except OSError as exc:
                raise_disk_error(exc, f"make {self.path} durable", self.url)
                raise
        self._dirty = False

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)


def _load_libc(name: str, argtypes: list[type]) -> Any:
    # The symbols already loaded into the process (libc among them): no library search,
    # which runs ldconfig in a subprocess and costs every fresh process milliseconds.
    try:
        func = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError, TypeError):
        return None
    func.argtypes = argtypes
    func.restype = ctypes.c_int
    return func


# syncfs(2) (Linux) makes a whole filesystem durable in one call: one journal commit
# for thousands of files instead of one per file.
_syncfs = _load_libc("syncfs", [ctypes.c_int])
# sync_file_range(2) (Linux) with SYNC_FILE_RANGE_WRITE starts writing a file back
# without waiting, so a batch's commit finds most of its data already on disk.
_sync_file_range = _load_libc("sync_file_range", [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint])
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int, offset: int = 0, nbytes: int = 0) -> None:
    """Start writing ``nbytes`` from ``offset`` back to disk without waiting (0: to the end)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


#: Threads that fsync files one by one when syncfs is not available.
_FSYNC_THREADS = 8


class FileBatch(Batch):
    """Puts written to temporary files, made durable and renamed into place by ``commit``.

    ``put`` writes a hidden temp file next to the final name and starts writing it
    back without waiting for the disk; ``commit`` syncs every temp file at once
    (``syncfs`` on the store's filesystem, else an fsync per file), then renames each to
    its final name and syncs the folders (and the parents of folders it created).
    So an object appears under its final name only once its content is durable, as
    with :meth:`FileBackend.put`, and thousands of puts cost one sync instead of two
    each. ``abort`` (or an exception in a ``with`` block) deletes the temp files.
    """

    def __init__(self, backend: FileBackend) -> None:
        super().__init__(backend)
        self._file_backend = backend
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}
        #: Folders this batch created or found: thousands of puts into one folder
        #: need not ask the filesystem to create it each time.
        self._folders: set[str] = set()
        #: Folders whose entries changed because this batch created a folder in them.
        self._grown: set[str] = set()

    def put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        backend = self._file_backend
        full = backend._target(path)
        folder = os.path.dirname(full)
        with backend._placing(path):
            if folder not in self._folders:
                self._make_folder(folder)
                self._folders.add(folder)
            if os.path.isdir(full):
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way", full)
            tmp = backend._write_temp(full, data, sync=False, make_folder=False)
        with self._lock:
            replaced = self._pending.pop(full, None)
            self._pending[full] = tmp
        if replaced is not None:
            _unlink_quietly(replaced)

    def _make_folder(self, folder: str) -> None:
        root = self._file_backend.root
        missing = []
        while folder != root and not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        if missing:
            os.makedirs(missing[0], exist_ok=True)
            with self._lock:
                self._grown.update(os.path.dirname(new) for new in missing)

    def commit(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            grown, self._grown = self._grown, set()
        if not pending:
            return
        folders = {os.path.dirname(full) for full in pending} | grown
        try:
            if self._file_backend._fsync:
                try:
                    self._file_backend._sync_files(list(pending.values()))
                except OSError as exc:
                    raise_disk_error(exc, f"make a batch of {len(pending)} objects durable", self._file_backend.url)
                    raise
            for full, tmp in list(pending.items()):
                try:
                    os.replace(tmp, full)
                except OSError:
                    # Only a failed rename pays for working out what is in the way.
                    with self._file_backend._placing(os.path.relpath(full, self._file_backend.root)):
                        raise
                del pending[full]
        finally:
            for tmp in pending.values():
                _unlink_quietly(tmp)
        for folder in folders:
            self._file_backend._sync_dir(folder)

    def abort(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for tmp in pending.values():
            _unlink_quietly(tmp)


def _root(url: str, location: str) -> str:
    if not location:
        raise ConfigurationError(f"{url!r} names no directory: use file:///abs/path or file://relative/path")
    return os.path.abspath(location)


class FileBackend(Backend):
    """A store rooted at a local directory."""

    capabilities = Capabilities(writable=True, appendable=True, atomic_create=True, local_path=True, copy=True)

    def __init__(self, root: str, options: FileOptions | None = None) -> None:
        self.root = os.path.abspath(root)
        self._given: dict[str, Any] = {}
        if options is None:
            self._options: FileOptions | None = None
            self._fsync, self._direct_io = _DEFAULTS["fsync"], _DEFAULTS["direct_io"]
        else:
            self.options = options
        self.url = "file://" + self.root

    @property
    def options(self) -> FileOptions:
        """The store's :class:`FileOptions` (built on first access when opened with plain options)."""
        if self._options is None:
            from .options import FileOptions

            self._options = FileOptions(**self._given)
        return self._options

    @options.setter
    def options(self, options: FileOptions) -> None:
        self._options = options
        self._fsync, self._direct_io = options.fsync, options.direct_io

    @classmethod
    def from_url(cls, url: StoreURL, options: FileOptions) -> FileBackend:
        """Build from ``file:///abs/path`` or ``file://relative/path`` (relative to the cwd)."""
        return cls(_root(url.raw, url.location), options)

    @classmethod
    def from_plain(cls, url: str, location: str, options: dict[str, Any], values: dict[str, Any]) -> FileBackend:
        """:meth:`from_url` without the models (the plugin's ``open_plain`` fast path).

        ``location`` is the URL's as :class:`~kara_core.url.StoreURL` gives it, ``options``
        the keyword options as given and ``values`` what :class:`FileOptions` makes of
        them (:func:`plain_file_options`); :attr:`options` builds the
        model from ``options`` when first read.
        """
        backend = cls(_root(url, location))
        backend._given = dict(options)
        backend._fsync, backend._direct_io = values["fsync"], values["direct_io"]
        return backend

    def _full(self, path: str) -> str:
        return os.path.join(self.root, check_path(path))

    def _target(self, path: str) -> str:
        """:meth:`_full` of a path to write: refused unless its names and its temporary
        name fit the file system (an :class:`UnsafePathError` before anything is written)."""
        full = self._full(path)
        *folders, name = path.split("/")
        room = _NAME_MAX - _TEMP_EXTRA
        if _bytes(name) > room or any(_bytes(folder) > _NAME_MAX for folder in folders):
            raise UnsafePathError(
                path,
                f"a file name may have {room} bytes and a folder name {_NAME_MAX} here "
                f"(the file system's {_NAME_MAX}, less {_TEMP_EXTRA} for kara's temporary names)",
            )
        if _bytes(full) + _TEMP_EXTRA >= _PATH_MAX:
            raise UnsafePathError(path, f"the path is longer than the file system takes ({_PATH_MAX} bytes)")
        return full

    @contextlib.contextmanager
    def _placing(self, path: str) -> Iterator[None]:
        """Turn the file system's refusals to place ``path`` (a file where it needs a
        folder, a folder where it needs a file) into an :class:`UnsafePathError`.

        Object stores hold ``a/b`` and ``a/b/c`` side by side; a folder of files cannot.
        """
        try:
            yield
        except OSError as exc:
            raise_disk_error(exc, f"write {self.url}/{path}", self.url)
            if exc.errno not in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY):
                raise
            parts = path.split("/")
            for end in range(1, len(parts)):
                if os.path.isfile(os.path.join(self.root, *parts[:end])):
                    blocker = "/".join(parts[:end])
                    raise UnsafePathError(path, f"{blocker!r} is a file of this store, not a folder") from None
            if os.path.isdir(self._full(path)):
                raise UnsafePathError(path, "it is a folder of this store, not a file") from None
            raise

    # -- reading -------------------------------------------------------------------

    def size(self, path: str) -> int | None:
        try:
            st = os.stat(self._full(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # no file can have this name here
                return None
            raise
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        full = self._full(path)
        try:
            with open(full, "rb", buffering=0) as fh:
                if start:
                    fh.seek(start)
                if end is None:
                    return fh.read()
                return fh.read(max(0, end - start))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"{self.url}/{path} does not exist") from None
        except OSError as exc:
            raise _not_found_if_too_long(exc, self.url, path) from None

    def open_read(self, path: str, start: int = 0) -> BinaryIO:
        try:
            fh = open(self._full(path), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"{self.url}/{path} does not exist") from None
        except OSError as exc:
            raise _not_found_if_too_long(exc, self.url, path) from None
        if start:
            fh.seek(start)
        return fh

    def local_path(self, path: str) -> str | None:
        return self._full(path)

    def list(self, prefix: str) -> Iterator[str]:
        folder, _, _ = prefix.rpartition("/")
        base = os.path.join(self.root, check_path(folder)) if folder else self.root
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            for name in sorted(filenames):
                if _TMP_MARK in name:
                    continue
                rel = rel_dir + name
                if rel.startswith(prefix):
                    yield rel

    # -- writing -------------------------------------------------------------------

    def open_append(self, path: str) -> FileAppender:
        full = self._target(path)
        with self._placing(path):
            return FileAppender(full, self._fsync, self.url)

    def _write_temp(
        self, full: str, data: bytes | bytearray | memoryview | BinaryIO, sync: bool = True, make_folder: bool = True
    ) -> str:
        directory = os.path.dirname(full)
        if make_folder:
            os.makedirs(directory, exist_ok=True)
        tmp = _temp_path(full)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                size = write_file(fd, data, direct_io=self._direct_io)
                if sync and self._fsync:
                    os.fsync(fd)
                elif self._fsync and size >= _EARLY_WRITEBACK_MIN:
                    # A large object's dirty pages start going to disk now, overlapping
                    # the rest of the batch. Small ones wait for the commit's syncfs:
                    # starting writeback per small file cost more CPU than it overlapped
                    # (2,000 files of 4-64 KiB: 0.1 s of CPU, 5-10% of a save).
                    _start_writeback(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp

    def _sync_dir(self, folder: str) -> None:
        if not self._fsync:
            return
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _sync_files(self, paths: list[str]) -> None:
        """Make the content of the files at ``paths`` durable (at least; maybe more)."""
        if _syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
        with ThreadPoolExecutor(max_workers=min(_FSYNC_THREADS, len(paths))) as pool:
            list(pool.map(_fsync_path, paths))

    def sync_scope(self) -> str | None:
        """This boot of this machine and the store's filesystem (None with ``fsync=False``).

        Objects put unsynced sit in this kernel's page cache until :meth:`sync`; a restart
        changes the boot id, so a commit then knows it cannot vouch for them.
        """
        if not self._fsync:
            return None
        boot = _boot_id()
        if not boot:
            return None
        folder = self.root  # the store's folder, or the nearest one that exists yet
        while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
            folder = os.path.dirname(folder)
        return f"{boot}:{os.stat(folder).st_dev}"

    def put_unsynced(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        """:meth:`put` without its two fsyncs; a large object starts its writeback at once."""
        self._put(path, data, sync=False)

    def sync(self, paths: list[str]) -> None:
        """One ``syncfs`` (else an fsync per file), then an fsync of each of their folders."""
        if not paths or not self._fsync:
            return
        full = [self._full(path) for path in paths]
        self._sync_files(full)
        for folder in sorted({os.path.dirname(path) for path in full}):
            self._sync_dir(folder)

    def open_batch(self) -> FileBatch:
        return FileBatch(self)

    def put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        self._put(path, data, sync=True)

    def _put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO, sync: bool) -> None:
        full = self._target(path)
        with self._placing(path):
            tmp = self._write_temp(full, data, sync=sync)
            try:
                os.replace(tmp, full)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        if sync:
            self._sync_dir(os.path.dirname(full))

    def copy(self, source: str, target: str) -> None:
        """Copy in the kernel (``shutil.copyfile``: sendfile/copy_file_range), then rename into place."""
        src, full = self._full(source), self._target(target)
        if not os.path.isfile(src):
            raise NotFoundError(f"{self.url}/{source} does not exist")
        with self._placing(target):
            os.makedirs(os.path.dirname(full), exist_ok=True)
        tmp = _temp_path(full)
        try:
            with self._placing(target):
                shutil.copyfile(src, tmp)
                if self._fsync:
                    _fsync_path(tmp)
                os.replace(tmp, full)
        except FileNotFoundError:
            raise NotFoundError(f"{self.url}/{source} does not exist") from None
        finally:
            _unlink_quietly(tmp)
        self._sync_dir(os.path.dirname(full))

    def move(self, source: str, target: str) -> None:
        """Rename in place (``os.replace``): atomic, no byte moves; the folders are synced."""
        src, full = self._full(source), self._target(target)
        if not os.path.isfile(src):
            raise NotFoundError(f"{self.url}/{source} does not exist")
        try:
            with self._placing(target):
                os.makedirs(os.path.dirname(full), exist_ok=True)
                os.replace(src, full)
        except FileNotFoundError:
            raise NotFoundError(f"{self.url}/{source} does not exist") from None
        self._sync_dir(os.path.dirname(full))
        if os.path.dirname(src) != os.path.dirname(full):
            self._sync_dir(os.path.dirname(src))

    def put_if_absent(self, path: str, data: bytes) -> bool:
        return self._create(path, data, durable=True)

    def create_lock(self, path: str, data: bytes) -> bool:
        """``put_if_absent`` without its two fsyncs (see :meth:`Backend.create_lock`)."""
        return self._create(path, data, durable=False)

    def _create(self, path: str, data: bytes, durable: bool) -> bool:
        full = self._target(path)
        with self._placing(path):
            if os.path.exists(full):
                if os.path.isdir(full):
                    raise IsADirectoryError(errno.EISDIR, "a folder is in the way", full)
                return False
            tmp = self._write_temp(full, data, sync=durable)
        try:
            # link() publishes the complete temp file under the final name, or fails if
            # the name exists: an atomic create-with-content.
            os.link(tmp, full)
        except FileExistsError:
            return False
        finally:
            _unlink_quietly(tmp)
        if durable:
            self._sync_dir(os.path.dirname(full))
        return True

    def delete(self, path: str) -> None:
        try:
            _unlink_quietly(self._full(path))
        except OSError as exc:
            raise_disk_error(exc, f"delete {self.url}/{path}", self.url)
            if exc.errno != errno.ENAMETOOLONG:  # no file has this name: nothing to delete
                raise

    def cleanup(self, prefix: str, older_than: float) -> int:
        """Delete this backend's temp files under ``prefix`` last written over ``older_than`` s ago.

        They are what a process killed in the middle of a ``put`` or before a batch's
        ``commit`` leaves behind (``.<name>.kara-tmp-<id>``).
        """
        folder, _, _ = prefix.rpartition("/")
        base = os.path.join(self.root, check_path(folder)) if folder else self.root
        deadline = time.time() - older_than
        removed = 0
        for dirpath, _, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            for name in filenames:
                if _TMP_MARK not in name or not (rel_dir + name).startswith(prefix):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    if os.lstat(full).st_mtime <= deadline:
                        os.unlink(full)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed


def _bytes(name: str) -> int:
    """The length of ``name`` in the file system's encoding."""
    return len(name.encode("utf-8", "surrogatepass"))


def _not_found_if_too_long(exc: OSError, url: str, path: str) -> Exception:
    """A read of a name too long for the file system finds nothing; other errors stay."""
    if exc.errno == errno.ENAMETOOLONG:
        return NotFoundError(f"{url}/{path} does not exist (its name is longer than the file system takes)")
    return exc


def _temp_path(full: str) -> str:
    """A hidden temp name next to ``full`` (invisible to ``list``, removed by ``cleanup``)."""
    return os.path.join(os.path.dirname(full), f".{os.path.basename(full)}{_TMP_MARK}{uuid.uuid4().hex}")


@functools.cache
def _boot_id() -> str:
    """The kernel's id of this boot (Linux), or "" where there is none."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
