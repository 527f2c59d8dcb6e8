"""``kara obj``: save and load folders as versions (2.x's form too), list, remove, gc."""

from __future__ import annotations

from typing import Any

import click

from .app import cli
from .browse import ls_command
from .options import UrlCommand, global_options, json_option, open_store, store_options, version_option
from .output import human_size, info, print_json, show_progress
from .url_first import URLFirstGroup


@click.group("obj", cls=URLFirstGroup, short_help="Save and load folders as versions; ls, rm, gc.")
@global_options
def obj_group() -> None:
    """Saved directories (object storage). kara-storage 2.x's form works unchanged:

    \b
      kara_storage obj URL save NAMESPACE KEY LOCAL_PATH [-v VERSION]
      kara_storage obj URL load NAMESPACE KEY LOCAL_PATH [-v VERSION]
      kara obj save URL NAMESPACE KEY LOCAL_PATH     (the same)
    """


def _workers_option(f: Any) -> Any:
    return click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel transfers.")(f)


@obj_group.command("save", cls=UrlCommand)
@store_options
@click.argument("namespace")
@click.argument("key")
@click.argument("local_path", type=click.Path(exists=True, file_okay=False))
@version_option(None, "Version name (default: the next free number).")
@click.option(
    "--overwrite/--no-overwrite",
    default=None,
    help="A named version that exists is replaced (as in 2.x); --no-overwrite refuses instead.",
)
@click.option(
    "--packs/--no-packs",
    default=None,
    help="Also store files up to 256 KiB in packs of about 8 MiB, so that loads from remote stores "
    "fetch them with a few requests (their bytes are stored twice). Default: on remote stores, "
    "not on file:// (use --packs for a file:// store that is also served over HTTP).",
)
@_workers_option
@global_options
def save_command(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str,
    key: str,
    local_path: str,
    version: str | None,
    overwrite: bool | None,
    packs: bool | None,
    workers: int | None,
) -> None:
    """Save the folder LOCAL_PATH as a version; print the version name.

    Saving a named version again (-v best) replaces it, as kara-storage 2.x did.

    \b
    Examples:
      kara obj save file:///data/store models bert ./checkpoint
      kara_storage obj file:///data/store save models bert ./checkpoint -v step-1000
    """
    storage = open_store(url, app_key, app_secret)
    options: dict[str, Any] = {"pack_small_files": packs}
    if overwrite is not None:
        options["overwrite"] = overwrite
    if workers is not None:
        options["workers"] = workers
    saved = storage.save_directory(namespace, key, local_path, version, progress_bar=show_progress(), **options)
    info(f"saved {local_path} as {namespace}/{key} version {saved}")
    click.echo(saved)


@obj_group.command("load", cls=UrlCommand)
@store_options
@click.argument("namespace")
@click.argument("key")
@click.argument("local_path", type=click.Path(file_okay=False))
@version_option("latest", "Version to load.")
@click.option(
    "--delete",
    is_flag=True,
    help="Also remove or overwrite files under LOCAL_PATH that kara did not place there.",
)
@click.option("--dry-run", is_flag=True, help="Only show what would be downloaded, kept and deleted.")
@_workers_option
@json_option
@global_options
def load_command(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str,
    key: str,
    local_path: str,
    version: str,
    delete: bool,
    dry_run: bool,
    workers: int | None,
    as_json: bool,
) -> None:
    """Load a saved version into the folder LOCAL_PATH; print the version name.

    Files already present with the right content are not downloaded again. Files that
    kara did not put there are never deleted or overwritten without --delete.

    \b
    Examples:
      kara obj load file:///data/store models bert ./checkpoint
      kara_storage obj file:///data/store load models bert ./checkpoint -v step-1000
      kara obj load file:///data/store models bert ./checkpoint --dry-run --json
    """
    storage = open_store(url, app_key, app_secret)
    if dry_run:
        plan = storage.objects.plan_load(namespace, key, local_path, version)
        if as_json:
            print_json(plan.as_dict())
            return
        click.echo(f"version {plan.version} into {plan.target}:")
        click.echo(f"  download  {len(plan.download)} file(s), {human_size(plan.bytes_to_download)}")
        click.echo(f"  keep      {len(plan.keep)} file(s) already up to date")
        click.echo(f"  delete    {len(plan.delete)} file(s)")
        for path in plan.unmanaged:
            click.echo(f"  not placed by kara (needs --delete): {path}")
        return
    options: dict[str, Any] = {"delete": delete}
    if workers is not None:
        options["workers"] = workers
    loaded = storage.load_directory(namespace, key, local_path, version, progress_bar=show_progress(), **options)
    info(f"loaded {namespace}/{key} version {loaded} into {local_path}")
    if as_json:
        print_json({"namespace": namespace, "key": key, "version": loaded, "path": local_path})
    else:
        click.echo(loaded)


@obj_group.command("ls", cls=UrlCommand)
@store_options
@click.argument("namespace", required=False)
@click.argument("key", required=False)
@json_option
@global_options
def obj_ls_command(
    url: str, app_key: str | None, app_secret: str | None, namespace: str | None, key: str | None, as_json: bool
) -> None:
    """List saved directories: namespaces, keys, or a key's versions (files, size, latest).

    \b
    Examples:
      kara obj ls file:///data/store
      kara obj ls file:///data/store models bert --json
    """
    click.get_current_context().invoke(
        ls_command,
        url=url,
        app_key=app_key,
        app_secret=app_secret,
        namespace=namespace,
        key=key,
        kind="obj",
        as_json=as_json,
    )


@obj_group.command("rm", cls=UrlCommand)
@store_options
@click.argument("namespace")
@click.argument("key")
@click.option("-v", "--version", "version", required=True, help="Version to remove.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@global_options
def rm_command(
    url: str, app_key: str | None, app_secret: str | None, namespace: str, key: str, version: str, yes: bool
) -> None:
    """Remove one saved version (its blobs are reclaimed later by `kara obj gc`).

    \b
    Examples:
      kara obj rm file:///data/store models bert -v 3 --yes
    """
    storage = open_store(url, app_key, app_secret)
    if not yes:
        click.confirm(f"remove version {version} of {namespace}/{key} from {storage.url}?", abort=True, err=True)
    storage.objects.delete_version(namespace, key, version)
    info(f"removed {namespace}/{key} version {version}")


@obj_group.command("gc", cls=UrlCommand)
@store_options
@click.argument("namespace")
@click.argument("key")
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    default=None,
    help="Keep unreferenced blobs younger than this many seconds (they may belong to a save in progress).",
)
@json_option
@global_options
def gc_command(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str,
    key: str,
    grace_period: float | None,
    as_json: bool,
) -> None:
    """Delete blobs that no version of NAMESPACE/KEY references any more.

    \b
    Examples:
      kara obj gc file:///data/store models bert
      kara obj gc file:///data/store models bert --grace-period 0 --json
    """
    storage = open_store(url, app_key, app_secret)
    options = {} if grace_period is None else {"grace_period": grace_period}
    report = storage.objects.gc(namespace, key, **options)
    if as_json:
        print_json(report.as_dict())
    elif report.deferred:
        click.echo("a save of this key is running: nothing was deleted; run gc again later")
    else:
        click.echo(
            f"removed {len(report.removed)} blob(s) or pack(s), freed {human_size(report.bytes_freed)}; "
            f"kept {len(report.kept_recent)} unreferenced blob(s) or pack(s) younger than the grace period; "
            f"{report.referenced} blob(s) or pack(s) in use; "
            f"removed {report.leftovers_removed} leftover temporary file(s) of interrupted saves"
        )


cli.add_command(obj_group)
