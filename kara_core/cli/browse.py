"""``kara ls``, ``kara info`` and ``kara cat``: look at what a store holds."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import DatasetNotFoundError, NotFoundError, VersionNotFoundError
from .app import CommandError, cli
from .damage import DamageReport
from .options import (
    UrlCommand,
    global_options,
    json_option,
    open_raw_dataset,
    open_store,
    serialization_option,
    store_options,
    version_option,
)
from .output import human_size, print_json, print_table
from .render import decode_record, hexdump_lines

if TYPE_CHECKING:
    from ..storage import KaraStorage

KINDS = ("row", "obj")
kind_option = click.option(
    "--kind",
    type=click.Choice(["row", "obj", "all"]),
    default="all",
    show_default=True,
    help="Row datasets, saved directories (obj), or both.",
)


def _kinds(kind: str) -> tuple[str, ...]:
    return KINDS if kind == "all" else (kind,)


def has_key(storage: KaraStorage, kind: str, namespace: str, key: str) -> bool:
    """Return whether ``namespace/key`` exists as a row dataset (``row``) or object (``obj``)."""
    try:
        return key in storage.list_keys(namespace, kind)
    except NotFoundError:
        return False


def version_summary(storage: KaraStorage, kind: str, namespace: str, key: str, version: str) -> dict[str, Any]:
    """Return one version's facts: records and bytes (rows), files and bytes (objects)."""
    if kind == "row":
        facts = storage.rows.dataset_info(namespace, key, version)
        return {
            "kind": "row",
            "namespace": namespace,
            "key": key,
            "version": str(version),
            "records": facts.get("records"),
            "bytes": facts.get("data_bytes"),
            "blocks": facts.get("blocks"),
            "latest": bool(facts.get("latest")),
        }
    facts = storage.objects.version_info(namespace, key, version)
    return {
        "kind": "obj",
        "namespace": namespace,
        "key": key,
        "version": str(facts.get("version", version)),
        "files": facts.get("files"),
        "bytes": facts.get("bytes"),
        "latest": bool(facts.get("latest")),
    }


def _latest(storage: KaraStorage, kind: str, namespace: str, key: str) -> str | None:
    meta = storage.get_row_meta(namespace, key) if kind == "row" else storage.get_object_meta(namespace, key)
    latest = meta.get("latest")
    return None if latest is None else str(latest)


@cli.command("ls", cls=UrlCommand)
@store_options
@click.argument("namespace", required=False)
@click.argument("key", required=False)
@kind_option
@json_option
@global_options
def ls_command(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str | None,
    key: str | None,
    kind: str,
    as_json: bool,
) -> None:
    """List namespaces, the keys of a namespace, or the versions of a key.

    With a KEY, every version is listed with its record count (rows) or file count
    (objects), its size, and a * on the latest one.

    \b
    Examples:
      kara ls file:///data/store
      kara ls file:///data/store corpus
      kara ls file:///data/store corpus train --json
      KARA_URL=file:///data/store kara ls corpus train
    """
    storage = open_store(url, app_key, app_secret)
    kinds = _kinds(kind)
    damage = DamageReport()
    if namespace is None:
        entries = [{"kind": k, "namespace": ns} for k in kinds for ns in storage.list_namespaces(k)]
        if not entries:
            raise CommandError(nothing_there(storage, kinds))
        if as_json:
            print_json(entries)
        else:
            print_table(["KIND", "NAMESPACE"], [[e["kind"], e["namespace"]] for e in entries])
        return
    if key is None:
        entries = []
        for k in kinds:
            for name in storage.list_keys(namespace, k):
                with damage.entry(f"{k} {namespace}/{name}"):
                    versions = storage.list_versions(namespace, name, k)
                    entries.append(
                        {
                            "kind": k,
                            "namespace": namespace,
                            "key": name,
                            "versions": len(versions),
                            "latest": _latest(storage, k, namespace, name),
                        }
                    )
        if not entries and not damage.entries:
            raise CommandError(f"namespace {namespace!r} holds no datasets or saved directories in {storage.url}")
        if as_json:
            print_json(entries)
        else:
            print_table(
                ["KIND", "KEY", "VERSIONS", "LATEST"],
                [[e["kind"], e["key"], e["versions"], e["latest"] or "-"] for e in entries],
            )
        damage.finish()
        return
    present = [k for k in kinds if has_key(storage, k, namespace, key)]
    if not present:
        raise DatasetNotFoundError(kinds[0], namespace, key, storage.url)
    versions = []
    for k in present:
        listed: list[str] = []
        with damage.entry(f"{k} {namespace}/{key}"):
            listed = storage.list_versions(namespace, key, k)
        for v in listed:
            with damage.entry(f"{k} {namespace}/{key} version {v!r}"):
                versions.append(version_summary(storage, k, namespace, key, v))
    if as_json:
        print_json(versions)
        damage.finish()
        return
    print_table(
        ["KIND", "VERSION", "RECORDS/FILES", "SIZE", "LATEST"],
        [
            [
                v["kind"],
                v["version"],
                v.get("records", v.get("files")),
                human_size(v["bytes"]),
                "*" if v["latest"] else "",
            ]
            for v in versions
        ],
    )
    damage.finish()


def nothing_there(storage: KaraStorage, kinds: tuple[str, ...]) -> str:
    """The one line saying a store holds nothing of ``kinds`` (a URL pointing at nothing)."""
    what = {"row": "row datasets", "obj": "saved directories"}
    return f"nothing at {storage.url}: no {' or '.join(what[k] for k in kinds)} there (check the URL)"


@cli.command("info", cls=UrlCommand)
@store_options
@click.argument("namespace")
@click.argument("key")
@version_option(None, "Version to describe (default: the latest).")
@kind_option
@json_option
@global_options
def info_command(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str,
    key: str,
    version: str | None,
    kind: str,
    as_json: bool,
) -> None:
    """Describe one dataset (and/or saved directory) version: size, counts, versions.

    \b
    Examples:
      kara info file:///data/store corpus train
      kara info file:///data/store corpus train -v 2 --json
    """
    storage = open_store(url, app_key, app_secret)
    kinds = _kinds(kind)
    present = [k for k in kinds if has_key(storage, k, namespace, key)]
    if not present:
        raise DatasetNotFoundError(kinds[0], namespace, key, storage.url)
    described = []
    missing: list[VersionNotFoundError] = []
    damage = DamageReport()
    for k in present:
        with damage.entry(f"{k} {namespace}/{key}"):
            chosen = version if version is not None else _latest(storage, k, namespace, key)
            if chosen is None:
                continue
            try:
                facts = version_summary(storage, k, namespace, key, chosen)
            except VersionNotFoundError as exc:
                # A key may be both a dataset and a saved directory with different versions:
                # describe whichever has the version asked for.
                missing.append(exc)
                continue
            facts["versions"] = storage.list_versions(namespace, key, k)
            if k == "row":
                facts.update(record_format(storage, namespace, key, facts["version"]))
            described.append(facts)
    if not described and missing and not damage.entries:
        raise missing[0]
    if as_json:
        print_json(described)
        damage.finish()
        return
    for facts in described:
        what = "row dataset" if facts["kind"] == "row" else "saved directory"
        click.echo(f"{what} {namespace}/{key} in {storage.url}")
        latest = " (latest)" if facts["latest"] else ""
        click.echo(f"  version   {facts['version']}{latest}")
        if facts["kind"] == "row":
            click.echo(f"  records   {facts['records']}")
            click.echo(
                f"  data      {human_size(facts['bytes'])} ({facts['bytes']} bytes) in {facts['blocks']} block(s)"
            )
            recorded = "" if facts["sidecar"] else " (no sidecar: written by kara-storage 2.x)"
            click.echo(f"  format    {facts['serializer']}{recorded}")
            if facts["compression_ratio"] is not None:
                click.echo(f"  ratio     {facts['compression_ratio']:.2f}x (serialized bytes / stored bytes)")
        else:
            click.echo(f"  files     {facts['files']}")
            click.echo(f"  size      {human_size(facts['bytes'])} ({facts['bytes']} bytes)")
        click.echo(f"  versions  {', '.join(facts['versions'])}")
    damage.finish()


#: Records decoded to estimate a version's compression ratio (spread over the version).
RATIO_SAMPLES = 1000


def record_format(storage: KaraStorage, namespace: str, key: str, version: str) -> dict[str, Any]:
    """The serializer a row version records and, for compressed records, the compression ratio.

    The ratio is the serialized size over the stored size, measured on up to
    RATIO_SAMPLES records spread evenly over the version (None: not compressed).
    """
    from ..row.sidecar import read_sidecar
    from ..serialization import WrappingSerializer

    sidecar = read_sidecar(storage.backend, namespace, key, version)
    facts: dict[str, Any] = {
        "serializer": sidecar.serializer if sidecar else "json",
        "sidecar": sidecar is not None,
        "compression_ratio": None,
    }
    if sidecar is None or "+" not in sidecar.serializer or sidecar.serializer.startswith("custom:"):
        return facts
    with storage.open_dataset(namespace, key, "r", version) as ds:
        serializer, count = ds.serializer, len(ds)
        # In a grouped version (zstd's default) the records' bytes come back plain from
        # their groups: what is stored is the groups' frames, counted pro rata below.
        grouped = bool(getattr(serializer, "grouped", False))
        stored = serialized = 0
        samples = sorted({i * count // RATIO_SAMPLES for i in range(min(count, RATIO_SAMPLES))})
        for index in samples:
            raw = ds.read_raw_range(index, index + 1)[0]
            stored += len(raw)
            layer: Any = serializer.inner if grouped else serializer
            while isinstance(layer, WrappingSerializer):
                raw, layer = layer.decode(raw), layer.inner
            serialized += len(raw)
        if grouped and samples:
            stored = ds.nbytes() * len(samples) // count
    if stored:
        facts["compression_ratio"] = round(serialized / stored, 3)
    return facts


def _as_json(value: Any) -> Any:
    # orjson's numpy support covers arrays of numbers; 0-d arrays and other dtypes
    # (datetimes, strings) go through tolist().
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
    return tolist()


def _bounds(total: int, begin: int, end: int | None) -> tuple[int, int]:
    # Negative positions count from the end, as in Python slicing.
    begin = max(0, begin + total if begin < 0 else begin)
    stop = total if end is None else (end + total if end < 0 else end)
    return min(begin, total), max(min(stop, total), 0)


@cli.command("cat", cls=UrlCommand)
@store_options
@click.argument("namespace")
@click.argument("key")
@version_option("latest", "Dataset version.")
@click.option("--begin", type=int, default=0, show_default=True, help="First record (negative: from the end).")
@click.option("--end", type=int, default=None, help="Stop before this record (default: the end).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "repr", "hex"]),
    default="jsonl",
    show_default=True,
    help="jsonl: one JSON document per line; repr: Python repr per line; hex: hex dump of the stored bytes.",
)
@serialization_option
@global_options
def cat_command(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str,
    key: str,
    version: str,
    begin: int,
    end: int | None,
    fmt: str,
    serialization: str | None,
) -> None:
    """Print the records of a row dataset to stdout (pipe-friendly).

    \b
    Examples:
      kara cat file:///data/store corpus train | head
      kara cat file:///data/store corpus train --begin 100 --end 110 | jq .text
      kara cat file:///data/store feats v1 -s pickle --format repr
      kara cat file:///data/store blobs v1 --format hex --end 1
    """
    import orjson

    ds, serializer = open_raw_dataset(url, app_key, app_secret, namespace, key, version, serialization)
    try:
        start, stop = _bounds(len(ds), begin, end)
        out = sys.stdout.buffer
        if start < stop:
            ds.seek(start)
        for index in range(start, stop):
            raw = ds.read(None)
            if raw is None:
                break
            if fmt == "hex":
                out.write(f"# record {index}: {len(raw)} bytes\n".encode())
                out.write(("\n".join(hexdump_lines(raw)) + "\n").encode())
                continue
            value, error = decode_record(raw, serializer)
            if fmt == "repr":
                out.write((repr(raw if error else value) + "\n").encode("utf-8", "backslashreplace"))
                continue
            if error:
                raise CommandError(
                    f"record {index} cannot be decoded as {serializer.name or serialization} ({error}); "
                    "try --serialization pickle/raw or --format hex"
                )
            try:
                out.write(orjson.dumps(value, default=_as_json, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
            except TypeError as exc:
                raise CommandError(
                    f"record {index} is a {type(value).__name__}, not JSON ({exc}); use --format repr or --format hex"
                ) from None
        out.flush()
    finally:
        ds.close()
