"""``kara verify``: check row indexes against their data and object manifests against blobs."""

from __future__ import annotations

import click

from ..errors import DatasetNotFoundError, VersionNotFoundError
from .app import CommandError, cli
from .browse import KINDS, has_key, kind_option, nothing_there
from .damage import DAMAGE
from .options import UrlCommand, global_options, json_option, open_store, store_options
from .output import print_json, progress_bar

#: Exit status when verification finds problems (errors that stop it are 1, usage 2).
EXIT_PROBLEMS = 3


@cli.command("verify", cls=UrlCommand)
@store_options
@click.argument("namespace", required=False)
@click.argument("key", required=False)
@click.option("-v", "--version", "version", default=None, help="Check only this version (default: all).")
@kind_option
@json_option
@global_options
def verify_command(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str | None,
    key: str | None,
    version: str | None,
    kind: str,
    as_json: bool,
) -> None:
    """Check datasets and saved directories; exit 0 when all is well, 3 when not.

    Row datasets: every index entry points inside the data and the metadata agrees.
    Saved directories: every manifest is valid and every blob exists with its hash.

    \b
    Examples:
      kara verify file:///data/store
      kara verify file:///data/store corpus train -v 3
      kara verify file:///data/store --json || echo "store is damaged"
    """
    storage = open_store(url, app_key, app_secret)
    kinds = KINDS if kind == "all" else (kind,)
    targets = []
    for k in kinds:
        namespaces = [namespace] if namespace is not None else storage.list_namespaces(k)
        for ns in namespaces:
            if key is not None:
                if has_key(storage, k, ns, key):
                    targets.append((k, ns, key))
            else:
                targets.extend((k, ns, name) for name in storage.list_keys(ns, k))
    if key is not None and not targets:
        raise DatasetNotFoundError(kinds[0], str(namespace), key, storage.url)
    if not targets and namespace is None:
        raise CommandError(nothing_there(storage, kinds))
    results = []
    with progress_bar(len(targets), "verify", unit="key") as bar:
        for k, ns, name in targets:
            half = storage.rows if k == "row" else storage.objects
            try:
                problems = half.verify(ns, name, version)
            except VersionNotFoundError:
                if key is not None:
                    raise
                # `-v V` over many keys checks the keys that have a version V.
                bar.update()
                continue
            except DAMAGE as exc:
                # A damaged key (unreadable meta.json...) fails; the others are still checked.
                problems = [str(exc)]
            results.append({"kind": k, "namespace": ns, "key": name, "ok": not problems, "problems": problems})
            bar.update()
    bad = [r for r in results if not r["ok"]]
    if as_json:
        print_json({"ok": not bad, "checked": len(results), "results": results})
    else:
        for r in results:
            status = "ok  " if r["ok"] else "FAIL"
            click.echo(f"{status}  {r['kind']}  {r['namespace']}/{r['key']}")
            for problem in r["problems"]:
                click.echo(f"        {problem}")
        verdict = "all well" if not bad else f"{len(bad)} with problems"
        click.echo(f"checked {len(results)}: {verdict}", err=True)
    if bad:
        click.get_current_context().exit(EXIT_PROBLEMS)
