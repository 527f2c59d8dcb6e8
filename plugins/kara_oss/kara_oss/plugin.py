"""Entry point of kara-oss: registers the ``oss`` scheme (cheap: oss2 is imported lazily)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kara_core import hookimpl

if TYPE_CHECKING:
    from kara_core.url import StoreURL

    from .backend import OSSBackend
    from .options import OSSOptions


def _factory(url: StoreURL, options: OSSOptions) -> OSSBackend:
    from .backend import OSSBackend

    return OSSBackend.from_url(url, options)


@hookimpl
def kara_register_backends(register: Callable[..., None]) -> None:
    """Register ``oss://ENDPOINT/BUCKET/prefix`` (Aliyun OSS through oss2)."""
    register(
        "oss",
        _factory,
        "kara_oss.options:OSSOptions",
        "Aliyun OSS: oss://ENDPOINT/BUCKET/prefix (app_key=..., app_secret=...)",
    )
