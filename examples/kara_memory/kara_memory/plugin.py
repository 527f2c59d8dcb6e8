"""Entry point: registers ``memory://NAME``. Cheap to import, as every entry point must be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kara_core import hookimpl


def _factory(url: Any, options: Any) -> Any:
    # Import the implementation only when a store is opened.
    from .backend import MemoryBackend

    return MemoryBackend(url.location, options)


@hookimpl
def kara_register_backends(register: Callable[..., None]) -> None:
    register("memory", _factory, "kara_memory.options:MemoryOptions", "in-process store for tests: memory://NAME")
