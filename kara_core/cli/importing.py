"""``kara import``: JSON lines into a row dataset, all or nothing."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Any

import click

from .app import CommandError, cli
from .options import UrlCommand, global_options, json_option, open_store, serialization_option, store_options
from .output import info, print_json, progress_bar

#: Input kept in memory up to this size when it must be read twice (stdin); then a temp file.
SPOOL_BYTES = 64 * 1024 * 1024


def _records(stream: IO[bytes], name: str, serializer: Any) -> Iterator[Any]:
    """Yield the JSON value of every non-blank line; a bad line raises naming its number."""
    import orjson

    for lineno, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CommandError(f"{name}, line {lineno}: not valid JSON ({exc}); nothing was imported") from None
        try:
            serializer.serialize(value)
        except Exception as exc:  # noqa: BLE001 - any serializer failure is reported the same way
            raise CommandError(
                f"{name}, line {lineno}: cannot be stored with the {serializer.name or 'given'} serializer "
                f"({type(exc).__name__}: {exc}); nothing was imported"
            ) from None
        yield value


def _counted(values: Iterator[Any], bar: Any) -> Iterator[Any]:
    for value in values:
        yield value
        bar.update()


def _rewindable(source: IO[bytes]) -> IO[bytes]:
    # The input is read twice (check, then write); stdin and pipes cannot seek, so they
    # are copied while being read the first time.
    try:
        if source.seekable():
            source.tell()
            return source
    except OSError:
        pass
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    while chunk := source.read(1 << 20):
        spool.write(chunk)
    spool.seek(0)
    return spool  # type: ignore[return-value]


@cli.command("import", cls=UrlCommand)
@store_options
@click.argument("namespace")
@click.argument("key")
@click.argument("source", metavar="FILE|-", type=click.File("rb"))
@click.option("-v", "--version", "version", required=True, help="Version to write (appended to if it exists).")
@serialization_option
@json_option
@global_options
def import_command(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str,
    key: str,
    source: IO[bytes],
    version: str,
    serialization: str,
    as_json: bool,
) -> None:
    """Append the JSON lines of FILE (or stdin: -) to a row dataset version.

    All or nothing: the whole input is parsed and checked before the first record is
    written, so a bad line fails the import with its line number and leaves the dataset
    exactly as it was. Blank lines are skipped; an input without records creates nothing
    and leaves `latest` where it was.

    \b
    Examples:
      kara import file:///data/store corpus train -v 1 train.jsonl
      zcat dump.jsonl.gz | kara import file:///data/store corpus train -v 2 -
      kara import file:///data/store feats v1 -v 1 feats.jsonl --serialization pickle
    """
    from ..serialization import resolve_serializer

    serializer = resolve_serializer(serialization)
    source_name = str(getattr(source, "name", "-"))
    name = "stdin" if source_name in ("<stdin>", "-") else source_name
    stream = _rewindable(source)
    start = stream.tell()
    count = sum(1 for _ in _records(stream, name, serializer))
    stream.seek(start)
    if count == 0:
        # Opening the version for writing would create it (or the store) and make it the
        # latest: an empty input changes nothing instead.
        if as_json:
            print_json({"namespace": namespace, "key": key, "version": str(version), "records": 0, "written": False})
        else:
            info(f"{name} holds no records: nothing imported, {namespace}/{key} left as it was (latest unchanged)")
        return
    storage = open_store(url, app_key, app_secret)
    ds = storage.open_dataset(namespace, key, "w", version, serialization=serializer)
    with progress_bar(count, f"import {namespace}/{key}", unit="rec") as bar:
        try:
            ds.write_many(_counted(_records(stream, name, serializer), bar))
        finally:
            ds.close()
    if as_json:
        print_json({"namespace": namespace, "key": key, "version": str(version), "records": count, "written": True})
    else:
        info(f"imported {count} records into {namespace}/{key} version {version}")
