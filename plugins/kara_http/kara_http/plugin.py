"""Entry point of kara-http: the ``http``/``https`` schemes and ``kara serve`` (cheap to import).

Nothing here imports kara_transport, uvicorn or starlette: they load inside the factory and
the command, so ``import kara_core`` and ``kara --help`` stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kara_core import hookimpl

if TYPE_CHECKING:
    import click


def _factory(url: Any, options: Any) -> Any:
    from .backend import HTTPBackend

    return HTTPBackend.from_url(url, options)


@hookimpl
def kara_register_backends(register: Callable[..., None]) -> None:
    # The options model by name: imported when an http(s):// store is opened.
    register("http", _factory, "kara_http.options:HTTPOptions", "web server or kara gateway: http://host[:port]/prefix")
    register(
        "https",
        _factory,
        "kara_http.options:HTTPOptions",
        "web server or kara gateway over TLS: https://host[:port]/prefix",
    )


@hookimpl
def kara_register_commands(cli: click.Group) -> None:
    from .serve import serve

    cli.add_command(serve)
