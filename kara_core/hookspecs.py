"""Every hook a kara plugin can implement.

A plugin is a module (or object) named by an entry point in the ``kara.plugins`` group::

    [project.entry-points."kara.plugins"]
    file = "kara_file.plugin"

and decorates its functions with :data:`hookimpl` (also ``kara_core.hookimpl``); both
pluggy markers of project ``kara`` are defined here, as llm does. All hooks are
``register``-style: the plugin calls the ``register`` callback it is given, and the core
builds the tables, so it can list what each plugin provides and detect clashes.
Entry-point modules must be cheap to import: import heavy libraries (oss2, requests,
torch) inside the factories, never at module level. docs/plugins.md documents every
hook with an example (``tests/core/test_plugin_docs.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from .backend import Backend
    from .serialization import Serializer
    from .url import StoreURL

#: Marks the hook specifications below (for the core's plugin manager).
hookspec = pluggy.HookspecMarker("kara")
#: Marks a plugin's implementation of a hook: ``@hookimpl`` (also ``kara_core.hookimpl``).
hookimpl = pluggy.HookimplMarker("kara")

#: Signature of a backend factory: ``factory(url, options) -> Backend``.
BackendFactory = Callable[["StoreURL", "BaseModel"], "Backend"]


@hookspec
def kara_register_backends(register: Callable[..., None]) -> None:
    """Register storage backends, one call per URL scheme.

    :param register: ``register(scheme, factory, options_model, summary)`` where
        ``scheme`` is the URL scheme without ``://`` (``"oss"``), ``factory`` is a
        :data:`BackendFactory` called as ``factory(url, options)`` with the parsed
        :class:`~kara_core.url.StoreURL` and a validated instance of ``options_model``
        (a pydantic model, subclass of :class:`~kara_core.url.BackendOptions`, or the
        string ``"module:Class"`` naming it: the core then imports it when a store of
        this scheme is first opened, so loading plugins imports no options models), and
        ``summary`` is one line for ``kara plugins``. A plugin that can open many
        schemes it cannot list (a bridge to another ecosystem) registers the scheme
        ``"*"`` with ``claims=callable(scheme) -> bool``: it then opens any scheme that no
        plugin registered and that ``claims`` accepts. Optional
        ``open_plain=callable(url, location, options) -> Backend | None``: a fast path
        that opens a plain URL with plain keyword options without the options model (so
        without importing pydantic), or returns None to defer to the model and
        ``factory``; it must give the same backend, and defer on anything the model would
        refuse or change (kara-file's is tested against its model with hypothesis).
    :return: nothing; every implementation is called (no first-result stop). When two
        plugins register the same scheme, the first registration wins (plugins run before
        ``trylast`` built-ins) and the clash is reported by ``kara plugins``; a scheme
        registered by name wins over every ``"*"`` fallback; the environment variable
        ``KARA_PLUGIN_<SCHEME>=<plugin name>`` picks a plugin explicitly
        (:func:`kara_core.plugins.get_backend_spec`).
    """


@hookspec
def kara_register_serializers(register: Callable[[str, type[Serializer]], None]) -> None:
    """Register serializers selectable by name (``open_dataset(..., serialization="pickle")``).

    :param register: ``register(name, serializer_class)``; ``serializer_class`` is a
        subclass of :class:`~kara_core.serialization.Serializer` constructible without
        arguments.
    :return: nothing; every implementation is called. The built-in ``json``, ``pickle``
        and ``raw`` serializers are registered by a ``trylast`` implementation, so a plugin
        registering the same name overrides them.
    """


@hookspec
def kara_register_integrations(register: Callable[[str, Any], None]) -> None:
    """Register integrations with other frameworks, by name.

    :param register: ``register(name, obj)``. The core looks integrations up by name:
        ``kara_core.make_torch_dataset`` calls ``obj.make_torch_dataset(dataset, **kwargs)``
        on the integration named ``"torch"``.
    :return: nothing; every implementation is called; the first registration of a name wins.
    """


@hookspec
def kara_register_commands(cli: click.Group) -> None:
    """Add commands to the ``kara`` command line.

    :param cli: the root :class:`click.Group`; call ``cli.add_command(...)``. Import heavy
        libraries inside the command functions so ``kara --help`` stays fast.
    :return: nothing; every implementation is called.
    """
