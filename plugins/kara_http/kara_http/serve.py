"""``kara serve``: expose any store over HTTP (needs ``pip install kara-http[server]``)."""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any

import click

from kara_core.errors import ConfigurationError

from .framing import MAX_HEAD

__all__ = ["serve"]

_UNITS = {"": 1, "b": 1}
_UNITS.update({prefix + suffix: 1024**power for power, prefix in enumerate("kmg", 1) for suffix in ("", "b", "ib")})


def _parse_size(value: str) -> int:
    text = value.strip().lower()
    number = text.rstrip("bgikm")
    unit = text[len(number) :]
    if not number.isdigit() or unit not in _UNITS:
        raise click.BadParameter(f"{value!r} is not a size: use bytes or a suffix such as 64MiB or 1GiB")
    return int(number) * _UNITS[unit]


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected KEY=VALUE, got {name or pair!r}", param_hint="--option")
        try:
            options[name] = json.loads(raw)
        except ValueError:
            options[name] = raw
    return options


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.argument("store_url")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0: every interface).")
@click.option("--port", default=8470, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any).")
@click.option(
    "--token",
    envvar="KARA_SERVE_TOKEN",
    help="Bearer token clients need to write (env KARA_SERVE_TOKEN). Without a token the gateway is read-only.",
)
@click.option(
    "--token-file",
    type=click.File("r"),
    help="Read the token from this file (keeps it out of the process list and shell history).",
)
@click.option("--read-token-required", is_flag=True, help="Reads need the token too.")
@click.option("--max-body-size", default="512MiB", show_default=True, help="Largest request body (one put/append).")
@click.option("--option", "-o", "store_options", multiple=True, metavar="KEY=VALUE", help="Store option (JSON).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"]))
@click.option(
    "--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS with this certificate (PEM)."
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="The private key of --tls-cert (PEM).")
@click.option(
    "--max-connections", default=256, show_default=True, type=click.IntRange(1), help="Connections served at once."
)
@click.option(
    "--idle-timeout",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds an idle connection lives.",
)
def serve(
    store_url: str,
    host: str,
    port: int,
    token: str | None,
    token_file: Any,
    read_token_required: bool,
    max_body_size: str,
    store_options: tuple[str, ...],
    log_level: str,
    tls_cert: str | None,
    tls_key: str | None,
    max_connections: int,
    idle_timeout: float,
) -> None:
    """Serve the store STORE_URL over HTTP: a kara gateway.

    Any kara-http client reads it like a static mirror
    (KaraStorage("http://HOST:PORT")); with the token it can also write row datasets
    and directory versions (KaraStorage("http://HOST:PORT", token=...)).

    \b
    Examples:
      kara serve file:///data/store
      KARA_SERVE_TOKEN=... kara serve oss://endpoint/bucket/prefix -o app_key=... -o app_secret=...
    """
    try:
        import uvicorn

        from .gateway import create_app
    except ImportError as exc:
        raise click.ClickException(
            f"kara serve needs the server extra: pip install 'kara-http[server]' ({exc})"
        ) from None
    if token_file is not None:
        token = token_file.read().strip()
    if token is not None and not token:
        raise click.BadParameter("the token is empty", param_hint="--token")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        app = create_app(
            store_url,
            token=token,
            read_token_required=read_token_required,
            max_body_size=_parse_size(max_body_size),
            store_options=_parse_options(store_options),
        )
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    mode = "writable with the token" if token else "read-only (no --token)"
    scheme = "https" if tls_cert else "http"
    click.echo(f"kara gateway serving {store_url} at {scheme}://{shown}:{bound} ({mode})", err=True)
    if not _is_loopback(host) and not tls_cert:
        click.echo(f"warning: listening on {host}, reachable from other machines; use --tls-cert/--tls-key", err=True)
    # h11 parses requests (strict: a request with both Content-Length and
    # Transfer-Encoding, or a malformed length, is refused with 400); heads are bounded
    # by its incomplete-event limit; past --max-connections new clients get 503.
    config = uvicorn.Config(
        app,
        log_level=log_level,
        server_header=False,
        http="h11",
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        limit_concurrency=max_connections,
        timeout_keep_alive=idle_timeout,
        h11_max_incomplete_event_size=MAX_HEAD,
    )
    uvicorn.Server(config).run(sockets=[sock])
