"""The ``kara`` PySpark data source: one part per partition on write, record ranges on read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice, pairwise
from typing import Any

from pyspark import TaskContext
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    DataSourceWriter,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.types import StructType

from kara_core import KaraStorage
from kara_core.errors import ConfigurationError
from kara_core.row.parallel import DEFAULT_PART_BLOCK_SIZE, ParallelWrite
from kara_core.serialization import NoSerializer, Serializer, innermost, resolve_serializer

from .schema import arrow_plain, infer_schema, row_converter

__all__ = ["KaraArrowWriter", "KaraCommitMessage", "KaraDataSource", "KaraReader", "KaraWriter", "register"]

#: Records sampled to infer the schema when the reader is given none.
SAMPLE_RECORDS = 100
#: Records per read partition when the ``partitions`` option is not set.
RECORDS_PER_PARTITION = 250_000
RAW_COLUMN = "bytes"
#: Options prefixed with this go to :class:`KaraStorage` (``store.fsync``, ``store.app_key``...).
STORE_OPTION = "store."
#: Records a write task hands to its part at a time.
CHUNK = 4096


def register(spark: Any) -> None:
    """Make ``format("kara")`` available in the SparkSession ``spark``."""
    spark.dataSource.register(KaraDataSource)


@dataclass(frozen=True)
class Target:
    """What the options of a read or write name: a store, a dataset, a version, how records look."""

    url: str
    namespace: str
    key: str
    version: str
    serializer: Serializer
    column: str | None
    store_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, str], default_version: str | None) -> Target:
        missing = [name for name in ("url", "namespace", "key") if not options.get(name)]
        version = options.get("version") or default_version
        if version is None:
            missing.append("version")
        if missing:
            raise ConfigurationError(f"the kara data source needs option(s) {', '.join(missing)}")
        serializer = resolve_serializer(options.get("serialization") or None)
        # Raw records, compressed or not (raw+zstd), are bytes: the "bytes" column.
        column = options.get("column") or (RAW_COLUMN if isinstance(innermost(serializer), NoSerializer) else None)
        store_options = {
            name[len(STORE_OPTION) :]: value for name, value in options.items() if name.startswith(STORE_OPTION)
        }
        return cls(
            options["url"], options["namespace"], options["key"], str(version), serializer, column, store_options
        )

    def store(self) -> KaraStorage:
        return KaraStorage(self.url, **self.store_options)


def _positive(options: Mapping[str, str], name: str, default: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"option {name} must be a positive integer, got {raw!r}")
    return value


class KaraDataSource(DataSource):
    """``format("kara")``: options ``url``, ``namespace``, ``key``, ``version``, ``serialization``.

    Also ``column`` (the one column records live in; ``bytes`` for raw records),
    ``partitions`` (read partitions), ``block_size`` (bytes per staged block on write)
    and ``store.<name>`` options passed to :class:`KaraStorage`.
    """

    @classmethod
    def name(cls) -> str:
        return "kara"

    def schema(self) -> StructType:
        """Inferred from the first records of the version (when the reader gives none)."""
        target = Target.from_options(self.options, "latest")
        with (
            target.store() as store,
            store.open_dataset(target.namespace, target.key, "r", target.version, target.serializer) as ds,
        ):
            # ds.serializer: configured for the version (a zstd group size, a dictionary).
            records = [ds.serializer.deserialize(raw) for raw in ds.read_raw_range(0, SAMPLE_RECORDS)]
        if target.column is None and not records:
            raise ConfigurationError(f"{target.namespace}/{target.key} is empty: pass a schema to the reader")
        return infer_schema(records, target.column)

    def reader(self, schema: StructType) -> KaraReader:
        return KaraReader(Target.from_options(self.options, "latest"), schema, self.options)

    def writer(self, schema: StructType, overwrite: bool) -> KaraWriter | KaraArrowWriter:
        """Arrow batches when every column converts to Python values as Spark's rows would
        (see :func:`~kara_spark.schema.arrow_plain`), else Spark's rows."""
        if overwrite:
            raise ConfigurationError("kara versions are never overwritten: write a new version (mode 'append')")
        target = Target.from_options(self.options, None)
        if target.column is not None and target.column not in schema.fieldNames():
            raise ConfigurationError(
                f"the records are in column {target.column!r}, which the DataFrame does not have "
                f"(its columns: {', '.join(schema.fieldNames())})"
            )
        kind = KaraArrowWriter if arrow_plain(schema) else KaraWriter
        return kind(target, _positive(self.options, "block_size", 0))


@dataclass(frozen=True)
class RecordRange(InputPartition):  # type: ignore[misc]
    """Records ``[start, stop)`` of the version: one read partition."""

    start: int
    stop: int


class KaraReader(DataSourceReader):
    """Reads one version (pinned when the reader is made) in contiguous record ranges."""

    def __init__(self, target: Target, schema: StructType, options: Mapping[str, str]) -> None:
        with (
            target.store() as store,
            store.open_dataset(target.namespace, target.key, "r", target.version, target.serializer) as ds,
        ):
            self.target = Target(**{**target.__dict__, "version": ds.version})
            self.records = len(ds)
        self.schema = schema
        wanted = -(-self.records // RECORDS_PER_PARTITION) or 1
        self.count = min(_positive(options, "partitions", wanted), max(self.records, 1))

    def partitions(self) -> list[RecordRange]:
        bounds = [self.records * i // self.count for i in range(self.count + 1)]
        return [RecordRange(start, stop) for start, stop in pairwise(bounds)]

    def read(self, partition: RecordRange) -> Iterator[tuple[Any, ...]]:
        target, schema = self.target, self.schema
        with (
            target.store() as store,
            store.open_dataset(target.namespace, target.key, "r", target.version, target.serializer) as ds,
        ):
            view = ds.slice(partition.start, partition.stop - partition.start)
            try:
                yield from map(row_converter(schema, target.column), view)
            finally:
                view.close()


@dataclass(frozen=True)
class KaraCommitMessage(WriterCommitMessage):  # type: ignore[misc]
    """What a write task reports: the part it wrote, in which attempt, how many records."""

    part: int
    attempt: str
    records: int


class _Writing:
    """What both writers share: the parallel write they open on the driver, a task's part,
    and the commit (the attempts of the successful tasks) or the abort."""

    def __init__(self, target: Target, block_size: int) -> None:
        self.target = target
        self.handle: ParallelWrite = target.store().open_parallel_write(
            target.namespace,
            target.key,
            target.version,
            target.serializer,
            block_size=block_size or DEFAULT_PART_BLOCK_SIZE,
        )

    def _write_chunks(self, chunks: Iterator[list[Any]]) -> KaraCommitMessage:
        """Write this task's records (lists of them) as its partition's part."""
        context = TaskContext.get()
        assert context is not None, f"{type(self).__name__}.write runs in a Spark task"
        with self.handle.part(context.partitionId(), attempt=f"task{context.taskAttemptId()}") as part:
            for chunk in chunks:
                part.write_many(chunk)
        return KaraCommitMessage(part.part, part.attempt, part.records)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        attempts = {m.part: m.attempt for m in messages if isinstance(m, KaraCommitMessage)}
        self.handle.commit(attempts)

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        self.handle.abort()


class KaraWriter(_Writing, DataSourceWriter):
    """Writes a new version from Spark's rows: partition ``i`` is part ``i``; the driver
    commits the reported attempts. Used for schemas :class:`KaraArrowWriter` does not take."""

    def write(self, iterator: Iterator[Any]) -> KaraCommitMessage:
        column = self.target.column
        if column is None:
            records = (row.asDict(recursive=True) for row in iterator)
        else:
            records = (_plain(row[column]) for row in iterator)
        return self._write_chunks(iter(lambda: list(islice(records, CHUNK)), []))


class KaraArrowWriter(_Writing, DataSourceArrowWriter):  # type: ignore[misc]
    """:class:`KaraWriter` taking Spark's Arrow batches: each batch becomes records with
    pyarrow's ``to_pylist`` (dicts, or the values of the ``column`` column), without a
    Spark ``Row`` per record and its ``asDict``."""

    def write(self, iterator: Iterator[Any]) -> KaraCommitMessage:
        column = self.target.column

        def chunks() -> Iterator[list[Any]]:
            for batch in iterator:
                for start in range(0, batch.num_rows, CHUNK):
                    piece = batch.slice(start, CHUNK)
                    yield piece.to_pylist() if column is None else piece.column(column).to_pylist()

        return self._write_chunks(chunks())


def _plain(value: Any) -> Any:
    # Spark hands binary values over as bytearray; records are bytes.
    return bytes(value) if isinstance(value, bytearray) else value
