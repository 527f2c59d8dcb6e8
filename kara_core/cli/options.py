"""Options shared by kara commands: the store URL (``KARA_URL``), credentials and backend
options (``--app-key``/``--app-secret``, ``--token``, ``-o NAME=VALUE``, ``--timeout``),
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
#: ctx.meta key of the store options given as -o/--token/--timeout: name -> (value, source).
STORE_META = "kara.store"
#: Seconds to wait for a connection (and, for commands that only look, to keep retrying).
DEFAULT_TIMEOUT = 5.0
#: Commands that only look at a store: a dead store fails them after --timeout seconds.
LOOKING_COMMANDS = frozenset({"ls", "info", "cat", "verify", "view"})


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


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # Kept in ctx.meta (not passed to the command): open_store reads them, so every
    # command taking a store gets the options without a parameter of its own.
    if value is not None and value != ():
        assert param.name is not None
        ctx.meta.setdefault(STORE_META, {})[param.name] = (value, ctx.get_parameter_source(param.name))
    return value


def _parse_pairs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in value:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", ctx=ctx, param=param)
        pairs[name.strip()] = text
    return _remember(ctx, param, pairs or None) or {}


def store_options(f: F) -> F:
    """Add the store URL argument, credentials and backend options."""
    f = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        envvar="KARA_TIMEOUT",
        expose_value=False,
        callback=_remember,
        help=f"Seconds to wait for a remote store to answer a connection (env KARA_TIMEOUT; default "
        f"{DEFAULT_TIMEOUT:g}); commands that only look (ls, info, cat, verify, view) also stop retrying then.",
    )(f)
    f = click.option(
        "-o",
        "--option",
        "option",
        multiple=True,
        metavar="NAME=VALUE",
        envvar="KARA_STORE_OPTIONS",
        expose_value=False,
        callback=_parse_pairs,
        help="A backend option, as KaraStorage(url, NAME=VALUE) takes it; repeatable "
        "(env KARA_STORE_OPTIONS, space-separated).",
    )(f)
    f = click.option(
        "--token",
        envvar="KARA_TOKEN",
        default=None,
        expose_value=False,
        callback=_remember,
        help="Bearer token of a `kara serve` gateway (env KARA_TOKEN).",
    )(f)
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


def _accepted_options(url: str) -> tuple[str, frozenset[str]] | None:
    # (scheme, the option names its plugin takes), or None if no plugin provides it (then
    # KaraStorage reports the URL).
    from ..errors import KaraError
    from ..plugins import get_backend_spec
    from ..url import parse_store_url

    try:
        scheme = parse_store_url(url).scheme
        spec = get_backend_spec(scheme, url)
    except KaraError:
        return None
    return scheme, frozenset(getattr(spec.options_model, "model_fields", {}))


def store_open_options(url: str, app_key: str | None, app_secret: str | None) -> dict[str, Any]:
    """The keyword options the command line and environment give the store at ``url``.

    ``-o NAME=VALUE`` options are passed as given (the plugin validates them). Credentials
    (``--app-key``, ``--app-secret``, ``--token``) reach only stores whose plugin takes
    them: on the command line for a store that takes none (2.x scripts pass OSS keys to
    ``file://`` too) they are ignored with a one-line warning, from the environment
    silently. Remote stores get ``--timeout`` as their connect timeout, and as their
    retry budget in commands that only look.
    """
    ctx = click.get_current_context()
    given: dict[str, tuple[Any, ParameterSource | None]] = ctx.meta.get(STORE_META, {})
    accepted = _accepted_options(url)
    options: dict[str, Any] = {}
    ignored: list[str] = []
    credentials = {"app_key": app_key, "app_secret": app_secret, "token": given.get("token", (None,))[0]}
    for name, value in credentials.items():
        if value is None:
            continue
        if accepted is not None and name not in accepted[1]:
            source = given[name][1] if name in given else ctx.get_parameter_source(name)
            if source is not ParameterSource.ENVIRONMENT:
                ignored.append("--" + name.replace("_", "-"))
            continue
        options[name] = value
    options.update(given.get("option", ({}, None))[0])
    if accepted is not None:
        timeout = given.get("timeout", (DEFAULT_TIMEOUT, None))[0]
        defaults = {"connect_timeout": timeout}
        if ctx.info_name in LOOKING_COMMANDS:
            defaults["retry_budget"] = timeout
        for name, value in defaults.items():
            if name in accepted[1]:
                options.setdefault(name, value)
    if ignored and accepted is not None:
        names = ", ".join(ignored)
        click.echo(f"kara: warning: {names} ignored: {accepted[0]}:// stores take no such option", err=True)
    return options


def open_store(url: str, app_key: str | None, app_secret: str | None) -> KaraStorage:
    """Open the store at ``url`` with the options of :func:`store_open_options`."""
    from ..storage import KaraStorage

    ctx = click.get_current_context()
    storage = KaraStorage(url, **store_open_options(url, app_key, app_secret))
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
