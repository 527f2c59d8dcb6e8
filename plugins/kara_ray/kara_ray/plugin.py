"""Entry point of kara-ray: registers the ``ray`` integration (cheap to import: no ray)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kara_core import hookimpl


class RayIntegration:
    """Builds kara's Ray Data datasink and datasource; imports ray only when used."""

    def datasink(self, url: str, namespace: str, key: str, version: Any, **kwargs: Any) -> Any:
        """A :class:`kara_ray.KaraDatasink` writing a new version."""
        from .datasink import KaraDatasink

        return KaraDatasink(url, namespace, key, version, **kwargs)

    def datasource(self, url: str, namespace: str, key: str, version: Any = "latest", **kwargs: Any) -> Any:
        """A :class:`kara_ray.KaraDatasource` reading one version."""
        from .datasource import KaraDatasource

        return KaraDatasource(url, namespace, key, version, **kwargs)


@hookimpl
def kara_register_integrations(register: Callable[[str, Any], None]) -> None:
    register("ray", RayIntegration())
