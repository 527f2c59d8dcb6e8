"""``kara row URL view NS KEY`` (kara-storage 2.x's form) and ``kara view``: the viewer."""

from __future__ import annotations

import sys

import click

from .app import CommandError, cli
from .options import UrlCommand, global_options, open_raw_dataset, serialization_option, store_options, version_option
from .url_first import URLFirstGroup


@click.group("row", cls=URLFirstGroup, short_help="Row datasets: the full-screen viewer (2.x form).")
@global_options
def row_group() -> None:
    """Row datasets. kara-storage 2.x's form works unchanged:

    \b
      kara_storage row URL view NAMESPACE KEY [-v VERSION] [--begin INDEX]
      kara row view URL NAMESPACE KEY            (the same)
    """


@click.command("view", cls=UrlCommand)
@store_options
@click.argument("namespace")
@click.argument("key")
@version_option("latest", "Dataset version.")
@click.option("--begin", type=int, default=0, show_default=True, help="Index of the first record shown.")
@serialization_option
@global_options
def view_command(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str,
    key: str,
    version: str,
    begin: int,
    serialization: str,
) -> None:
    """Browse a row dataset record by record in a full-screen viewer.

    Keys: N next record, P previous, T top, B bottom, arrows (or h j k l) scroll,
    PgUp/PgDn page, Home/End (or g/G) first/last record, Q quit. JSON records are
    pretty-printed in colour; records that do not decode are shown as a hex dump.

    \b
    Examples:
      kara_storage row file:///data/store view corpus train
      kara row view file:///data/store corpus train -v 3 --begin 1000
      kara view file:///data/store feats v1 --serialization pickle
    """
    from .viewer import ViewerState, run_viewer

    ds, serializer = open_raw_dataset(url, app_key, app_secret, namespace, key, version, serialization)
    try:
        count = len(ds)
        start = begin + count if begin < 0 else begin
        if count and not 0 <= start < count:
            raise CommandError(f"--begin {begin} is out of range: {namespace}/{key} has {count} records")
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise CommandError("the viewer needs a terminal; to print records use: kara cat URL NAMESPACE KEY")
        state = ViewerState(
            read=ds.__getitem__,
            count=count,
            serializer=serializer,
            title=f"{namespace}/{key} v{ds.version}",
            index=start,
        )
        run_viewer(state)
    finally:
        ds.close()


row_group.add_command(view_command)
cli.add_command(row_group)
cli.add_command(view_command)
