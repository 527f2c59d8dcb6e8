"""The plugin manager: built-in plugins and entry points, each loaded in isolation.

Built-in plugins (the serializers) go through exactly the same hooks as third-party
ones. Entry points in the ``kara.plugins`` group are loaded once, lazily, the first time
a table is needed; a plugin that fails to import is recorded with its distribution name
and traceback and the rest keeps working (``KARA_STRICT_PLUGINS=1`` makes it fatal).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import ConfigurationError, MissingPluginError, PluginLoadError, UnknownSchemeError
from .hookspecs import hookimpl

__all__ = [
    "ENTRY_POINT_GROUP",
    "KNOWN_SCHEMES",
    "BackendSpec",
    "PluginInfo",
    "choice_variable",
    "get_backend_spec",
    "get_integration",
    "get_plugin_manager",
    "get_serializer_class",
    "hookimpl",
    "list_plugins",
    "plugin_load_errors",
    "reset_plugins",
]

ENTRY_POINT_GROUP = "kara.plugins"

#: Scheme -> distribution providing it, for "pip install ..." hints when it is missing.
KNOWN_SCHEMES: dict[str, str] = {
    "file": "kara-file",
    "oss": "kara-oss",
    "http": "kara-http",
    "https": "kara-http",
}
#: Schemes that the generic fsspec plugin opens, for hints when no plugin claims them.
FALLBACK_SCHEMES: dict[str, str] = {
    "s3": "'kara-fsspec[s3]'",
    "gs": "'kara-fsspec[gcs]'",
    "gcs": "'kara-fsspec[gcs]'",
    "az": "'kara-fsspec[azure]'",
    "abfs": "'kara-fsspec[azure]'",
}
KNOWN_INTEGRATIONS: dict[str, str] = {"torch": "kara-torch"}

BUILTIN_PLUGINS = ("kara_core.serialization.builtin",)


@dataclass(frozen=True)
class BackendSpec:
    """One registered backend: how to build it and who registered it.

    ``options`` is the options model as registered: the class, or ``"module:Class"``
    naming it, imported the first time :attr:`options_model` is read (when a store of
    this scheme is opened), so loading the plugins imports no other scheme's options.

    ``open_plain`` (optional): ``open_plain(url, location, options) -> Backend | None``,
    the plugin's fast path for a plain URL (``location`` as :class:`~kara_core.url.StoreURL`
    gives it) and plain keyword options: it opens the store without the options model
    (and so without importing pydantic), or returns None to leave validation, and any
    error, to the model and :attr:`factory`.
    """

    scheme: str
    factory: Callable[..., Any]
    options: type | str
    summary: str
    plugin: str
    open_plain: Callable[[str, str, dict[str, Any]], Any] | None = None

    @property
    def options_model(self) -> type:
        """The options model class (imported on first use when registered by name)."""
        if isinstance(self.options, type):
            return self.options
        return _options_class(self.options, self.plugin)


#: "module:Class" -> the class, for options models registered by name (resolved once).
_options_classes: dict[str, type] = {}


def _options_class(ref: str, plugin: str) -> type:
    cls = _options_classes.get(ref)
    if cls is not None:
        return cls
    module_name, _, attr = ref.partition(":")
    try:
        import importlib

        found = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise PluginLoadError(
            f"kara plugin {plugin!r} registered the options model {ref!r}, which failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(found, type):
        raise PluginLoadError(f"kara plugin {plugin!r} registered the options model {ref!r}, which is not a class")
    _options_classes[ref] = found
    return found


@dataclass
class PluginInfo:
    """What ``kara plugins`` shows for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    serializers: list[str] = field(default_factory=list)
    integrations: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (for ``kara plugins --json``)."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "backends": self.backends,
            "serializers": self.serializers,
            "integrations": self.integrations,
            "error": self.error,
        }


class _Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("kara")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.errors: dict[str, str] = {}
        self._current = ""
        self.clashes: list[str] = []
        self.backends: dict[str, BackendSpec] = {}
        #: Every registration of each scheme, the ignored clashes included (for KARA_PLUGIN_<SCHEME>).
        self.alternatives: dict[str, list[BackendSpec]] = {}
        #: Fallback backends: (claims(scheme) -> bool, spec) for schemes nobody registered.
        self.fallbacks: list[tuple[Callable[[str], bool], BackendSpec]] = []
        self.serializers: dict[str, tuple[type, str]] = {}
        self.integrations: dict[str, tuple[Any, str]] = {}
        self._load()

    def _load(self) -> None:
        import importlib

        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            self.pm.register(module, name=module_name)
            self.infos[module_name] = PluginInfo(module_name, "kara-core", _version("kara-core"))
        strict = os.environ.get("KARA_STRICT_PLUGINS", "") not in ("", "0", "false", "no")
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            info = PluginInfo(ep.name, dist, version)
            self.infos[ep.name] = info
            if self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:
                detail = "".join(traceback.format_exception(exc))
                info.error = f"{type(exc).__name__}: {exc}"
                self.errors[ep.name] = detail
                message = f"kara plugin {ep.name!r} ({dist or 'unknown distribution'}) failed to load: {info.error}"
                if strict:
                    raise PluginLoadError(message + "\n" + detail) from exc
                warnings.warn(message + " (set KARA_STRICT_PLUGINS=1 to make this fatal)", stacklevel=2)
        for name, _plugin in self.pm.list_name_plugin():
            info = self.infos.setdefault(name, PluginInfo(name, None, None))
            info.hooks = sorted(h.name for h in self.pm.get_hookcallers(_plugin) or [])
        self._collect()

    def _collect(self) -> None:
        self._current = ""

        def register_backend(
            scheme: str,
            factory: Callable[..., Any],
            options_model: type | str,
            summary: str = "",
            claims: Callable[[str], bool] | None = None,
            open_plain: Callable[[str, str, dict[str, Any]], Any] | None = None,
        ) -> None:
            scheme = scheme.lower()
            if not isinstance(options_model, type) and not (
                isinstance(options_model, str) and _is_reference(options_model)
            ):
                raise TypeError(f"options_model of {scheme!r} must be a class or 'module:Class', got {options_model!r}")
            if scheme == "*":
                if claims is None:
                    raise TypeError("a fallback backend ('*') needs claims=callable(scheme) -> bool")
                self.fallbacks.append(
                    (claims, BackendSpec(scheme, factory, options_model, summary, self._current, open_plain))
                )
                self.infos[self._current].backends.append(scheme)
                return
            spec = BackendSpec(scheme, factory, options_model, summary, self._current, open_plain)
            self.alternatives.setdefault(scheme, []).append(spec)
            if scheme in self.backends:
                self.clashes.append(
                    f"backend {scheme!r} from {self._current} ignored: already registered by "
                    f"{self.backends[scheme].plugin}"
                )
                return
            self.backends[scheme] = spec
            self.infos[self._current].backends.append(scheme)

        def register_serializer(name: str, cls: type) -> None:
            if name in self.serializers:
                if self.serializers[name][1] not in BUILTIN_PLUGINS:
                    self.clashes.append(
                        f"serializer {name!r} from {self._current} ignored: already registered by "
                        f"{self.serializers[name][1]}"
                    )
                return
            self.serializers[name] = (cls, self._current)
            self.infos[self._current].serializers.append(name)

        def register_integration(name: str, obj: Any) -> None:
            if name in self.integrations:
                self.clashes.append(
                    f"integration {name!r} from {self._current} ignored: already registered by "
                    f"{self.integrations[name][1]}"
                )
                return
            self.integrations[name] = (obj, self._current)
            self.infos[self._current].integrations.append(name)

        for hook_name, register in (
            ("kara_register_backends", register_backend),
            ("kara_register_serializers", register_serializer),
            ("kara_register_integrations", register_integration),
        ):
            caller = getattr(self.pm.hook, hook_name)
            # Call implementations one at a time, in pluggy's order (plugins first,
            # trylast built-ins last), so each registration is attributed to its plugin
            # and one broken implementation does not hide the others.
            for impl in reversed(caller.get_hookimpls()):
                self._current = impl.plugin_name
                try:
                    impl.function(register=register)
                except Exception as exc:
                    message = f"kara plugin {impl.plugin_name!r} failed in {hook_name}: {exc!r}"
                    self.errors[impl.plugin_name] = "".join(traceback.format_exception(exc))
                    self.infos[impl.plugin_name].error = message
                    if os.environ.get("KARA_STRICT_PLUGINS", "") not in ("", "0", "false", "no"):
                        raise PluginLoadError(message) from exc
                    warnings.warn(message, stacklevel=2)
        self._current = ""


def _is_reference(ref: str) -> bool:
    module_name, sep, attr = ref.partition(":")
    return bool(sep) and all(part.isidentifier() for part in module_name.split(".")) and attr.isidentifier()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


_registry: _Registry | None = None
_lock = threading.Lock()


def _get() -> _Registry:
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = _Registry()
    return _registry


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the loaded :class:`pluggy.PluginManager` of project ``kara``."""
    return _get().pm


def reset_plugins() -> None:
    """Forget the loaded tables; the next lookup loads plugins again.

    Tests call it after registering or unregistering a plugin object by hand.
    """
    global _registry
    with _lock:
        _registry = None


def register_plugin(plugin: object, name: str) -> None:
    """Register a plugin object (a module or any object with hookimpls) at run time.

    Mainly for tests and applications that ship a plugin without an entry point.
    Call :func:`unregister_plugin` to remove it again.
    """
    reg = _get()
    reg.pm.register(plugin, name=name)
    reg.infos[name] = PluginInfo(name, None, None)
    _rebuild(reg)


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    reg = _get()
    reg.pm.unregister(name=name)
    reg.infos.pop(name, None)
    _rebuild(reg)


def _rebuild(reg: _Registry) -> None:
    reg.backends.clear()
    reg.alternatives.clear()
    reg.fallbacks.clear()
    reg.serializers.clear()
    reg.integrations.clear()
    reg.clashes.clear()
    for info in reg.infos.values():
        info.backends.clear()
        info.serializers.clear()
        info.integrations.clear()
    for name, plugin in reg.pm.list_name_plugin():
        if name in reg.infos:
            reg.infos[name].hooks = sorted(h.name for h in reg.pm.get_hookcallers(plugin) or [])
    reg._collect()


def get_backend_spec(scheme: str, url: str = "") -> BackendSpec:
    """Return the backend registered for ``scheme``.

    ``KARA_PLUGIN_<SCHEME>=<plugin>`` (``KARA_PLUGIN_S3=fsspec``) picks the plugin
    explicitly: its registration of the scheme, or its fallback, whichever it has
    (:class:`ConfigurationError` if it has neither). Otherwise a plugin that registered
    the scheme by name wins (the first one, if several did), and a scheme no plugin
    registered goes to the first fallback backend (registered as ``"*"``) whose
    ``claims(scheme)`` is true: so kara-obstore's ``s3`` is taken ahead of
    kara-fsspec's fallback when both are installed. Raises :class:`MissingPluginError` (naming
    the package to install) for a known scheme whose plugin is absent, and
    :class:`UnknownSchemeError` for any other scheme.
    """
    reg = _get()
    scheme = scheme.lower()
    chosen = os.environ.get(choice_variable(scheme), "").strip()
    if chosen:
        return _chosen_spec(reg, scheme, chosen)
    spec = reg.backends.get(scheme)
    if spec is not None:
        return spec
    if scheme in KNOWN_SCHEMES:
        raise MissingPluginError(f"backend for '{scheme}://'", KNOWN_SCHEMES[scheme], reg.backends)
    for claims, fallback in reg.fallbacks:
        if claims(scheme):
            return dataclasses.replace(fallback, scheme=scheme)
    if scheme in FALLBACK_SCHEMES:
        raise MissingPluginError(f"backend for '{scheme}://'", FALLBACK_SCHEMES[scheme], reg.backends)
    raise UnknownSchemeError(url or scheme + "://", scheme, reg.backends)


def choice_variable(scheme: str) -> str:
    """The environment variable that picks the plugin of ``scheme``: ``KARA_PLUGIN_S3`` for ``s3``."""
    return "KARA_PLUGIN_" + re.sub(r"[^A-Z0-9]", "_", scheme.upper())


def _chosen_spec(reg: _Registry, scheme: str, plugin: str) -> BackendSpec:
    """The backend of ``scheme`` registered by ``plugin`` (its registration or its fallback)."""
    candidates = list(reg.alternatives.get(scheme, []))
    candidates += [dataclasses.replace(spec, scheme=scheme) for claims, spec in reg.fallbacks if claims(scheme)]
    for spec in candidates:
        if spec.plugin == plugin:
            return spec
    offered = ", ".join(sorted({spec.plugin for spec in candidates})) or "none"
    raise ConfigurationError(
        f"{choice_variable(scheme)}={plugin!r}: no installed kara plugin of that name opens '{scheme}://' "
        f"(plugins that do: {offered}; `kara plugins` lists them)"
    )


def get_serializer_class(name: str) -> type:
    """Return the serializer class registered under ``name`` (KeyError if none)."""
    reg = _get()
    try:
        return reg.serializers[name][0]
    except KeyError:
        raise KeyError(name) from None


def serializer_names() -> list[str]:
    """Return the names of all registered serializers."""
    return sorted(_get().serializers)


def get_integration(name: str) -> Any:
    """Return the integration registered under ``name``.

    Raises :class:`MissingPluginError` naming the package to install when it is absent.
    """
    reg = _get()
    if name in reg.integrations:
        return reg.integrations[name][0]
    package = KNOWN_INTEGRATIONS.get(name, f"a plugin providing the {name!r} integration")
    raise MissingPluginError(f"{name} integration", package, reg.integrations)


def list_plugins() -> list[PluginInfo]:
    """Return every known plugin (built-in, loaded, or failed) with what it registers."""
    return list(_get().infos.values())


def plugin_load_errors() -> dict[str, str]:
    """Return ``{plugin name: traceback}`` for plugins that failed to load or register."""
    return dict(_get().errors)


def plugin_clashes() -> list[str]:
    """Return human-readable descriptions of registrations ignored because of a clash."""
    return list(_get().clashes)
