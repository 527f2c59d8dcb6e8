"""Options shared by kara commands: the store URL (``KARA_URL``), OSS credentials,
``--quiet``/``--debug``/``--json``, and opening the store they describe."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from ..row import RowDataset
    from ..serialization import Serializer
    from ..storage import KaraStorage

F = TypeVar("F", bound=Callable[..., Any])

URL_ENV = "KARA_URL"
DEBUG_META = "kara.debug"
QUIET_META = "kara.quiet"


def _set_meta(key: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        # ctx.meta is shared by the whole context chain, so `kara --debug cat ...` and
        # `kara cat ... --debug` mean the same.
        if value:
            ctx.meta[key] = True

    return callback


def global_options(f: F) -> F:
    """Add ``--quiet`` and ``--debug`` (accepted before or after the command name)."""
    f = click.option(
        "--debug",
        is_flag=True,
        envvar="KARA_DEBUG",
        expose_value=False,
        is_eager=True,
        callback=_set_meta(DEBUG_META),
        help="Show the full traceback on errors (env KARA_DEBUG=1).",
    )(f)
    return click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_meta(QUIET_META),
        help="Print no progress bars or informational messages.",
    )(f)


def serialization_option(f: F) -> F:
    """Add ``--serialization``: how records are decoded (a registered serializer name)."""
    return click.option(
        "-s",
        "--serialization",
        default=None,
        help=(
            "How records were serialized: json, pickle, raw, numpy, NAME+zstd or a plugin's serializer "
            "name. Default: the one the version records (json for versions 2.x wrote)."
        ),
    )(f)


def json_option(f: F) -> F:
    """Add ``--json``: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of text.")(f)


def version_option(default: str | None, help_text: str) -> Callable[[F], F]:
    """Add ``-v/--version`` (a dataset or directory version, as in kara-storage 2.x)."""
    return click.option("-v", "--version", "version", default=default, show_default=default is not None, help=help_text)


def store_options(f: F) -> F:
    """Add the store URL argument and the OSS credential options."""
    f = click.option(
        "--app-secret",
        envvar="OSS_ACCESS_KEY_SECRET",
        default=None,
        help="OSS access key secret (env OSS_ACCESS_KEY_SECRET).",
    )(f)
    f = click.option(
        "--app-key", envvar="OSS_ACCESS_KEY_ID", default=None, help="OSS access key id (env OSS_ACCESS_KEY_ID)."
    )(f)
    return click.argument("url", metavar="URL")(f)


class UrlCommand(click.Command):
    """A command whose first argument is a store URL, taken from ``KARA_URL`` when omitted.

    A URL is recognised by its ``://``: when no argument has one and ``KARA_URL`` is set,
    ``KARA_URL`` is used, so ``KARA_URL=file:///data kara ls ns`` works.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Insert ``KARA_URL`` as the URL argument when the command line names none."""
        env_url = os.environ.get(URL_ENV)
        if env_url and not any("://" in arg for arg in args) and not any(a in ("-h", "--help") for a in args):
            args = [env_url, *args]
        return super().parse_args(ctx, args)


def _scheme_accepts(url: str, option: str) -> bool:
    from ..errors import KaraError
    from ..plugins import get_backend_spec
    from ..url import parse_store_url

    try:
        spec = get_backend_spec(parse_store_url(url).scheme, url)
    except KaraError:
        return False
    return option in getattr(spec.options_model, "model_fields", {})


def open_store(url: str, app_key: str | None, app_secret: str | None) -> KaraStorage:
    """Open the store at ``url``, passing credentials only when they apply.

    Credentials given on the command line are always passed (a ``file://`` store then
    says it has no such option); credentials found in the environment are passed only to
    stores whose plugin accepts them, so exported OSS keys do not break ``file://``.
    """
    from ..storage import KaraStorage

    ctx = click.get_current_context()
    options: dict[str, Any] = {}
    for name, value in (("app_key", app_key), ("app_secret", app_secret)):
        if value is None:
            continue
        if ctx.get_parameter_source(name) is ParameterSource.ENVIRONMENT and not _scheme_accepts(url, name):
            continue
        options[name] = value
    storage = KaraStorage(url, **options)
    ctx.call_on_close(storage.close)
    return storage


def open_raw_dataset(
    url: str,
    app_key: str | None,
    app_secret: str | None,
    namespace: str,
    key: str,
    version: str,
    serialization: str | None,
) -> tuple[RowDataset, Serializer]:
    """Open a row dataset for reading its stored bytes, with its serializer.

    Commands that show records read them raw and decode each one themselves, so a record
    that does not decode can still be shown (as a hex dump). ``serialization`` (None: the
    one the version records) is checked before the store is opened, and against the
    version's record.
    """
    from ..serialization import resolve_serializer

    if serialization is not None:
        resolve_serializer(serialization)
    storage = open_store(url, app_key, app_secret)
    with storage.open_dataset(namespace, key, "r", version, serialization=serialization) as ds:
        return ds.as_raw(), ds.serializer
