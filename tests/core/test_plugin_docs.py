"""Every hook of kara_core/hookspecs.py is documented in docs/plugins.md with a working example.

As datasette does for its plugin hooks: a new hook without a section in the hook
reference fails here. Each section's example is run as a plugin module and what it
registers is used.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pluggy
import pytest
from click.testing import CliRunner

import kara_core
from kara_core import hookspecs
from kara_core.errors import UnknownSchemeError
from kara_core.plugins import get_backend_spec, register_plugin, reset_plugins, unregister_plugin
from kara_core.serialization import Serializer
from kara_core.url import BackendOptions, open_backend, parse_store_url

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"

#: Every hook specification: the functions hookspecs.py marks with its hookspec marker.
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "kara_spec"))


def _section(name: str) -> str:
    """The text of the hook reference section ``### `name(...)` ``, up to the next heading."""
    text = DOCS.read_text()
    match = re.search(rf"^### `{name}\(.*?\)`\n(.*?)(?=^#{{2,3}} |\Z)", text, re.S | re.M)
    assert match, f"docs/plugins.md has no section '### `{name}(...)`' in its hook reference"
    return match.group(1)


def _example(name: str, number: int = 0) -> types.ModuleType:
    """Run the section's python example ``number`` as a plugin module and return the module."""
    blocks = re.findall(r"^```python\n(.*?)^```", _section(name), re.S | re.M)
    assert len(blocks) > number, f"the section of {name} in docs/plugins.md has no python example {number + 1}"
    module = types.ModuleType(f"kara_docs_example_{name}_{number}")
    exec(compile(blocks[number], f"docs/plugins.md ({name}, example {number + 1})", "exec"), module.__dict__)
    return module


def _registrations(hook: Callable[..., None]) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    hook(register=lambda *args: calls.append(args))
    return calls


def test_the_hooks_are_found() -> None:
    # Guards the discovery above: an empty list would make every check below vacuous.
    assert "kara_register_backends" in HOOKS and len(HOOKS) >= 4


def test_hookspecs_defines_both_pluggy_markers_and_the_package_exports_hookimpl() -> None:
    assert isinstance(hookspecs.hookspec, pluggy.HookspecMarker)
    assert isinstance(hookspecs.hookimpl, pluggy.HookimplMarker)
    assert hookspecs.hookspec.project_name == hookspecs.hookimpl.project_name == "kara"
    assert kara_core.hookimpl is hookspecs.hookimpl


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_section_and_an_example_implementing_it(name: str) -> None:
    module = _example(name)
    impl = getattr(module, name, None)
    assert callable(impl), f"the example of {name} defines no function {name}"
    assert hasattr(impl, "kara_impl"), f"the example of {name} does not decorate it with @hookimpl"
    # The implementation takes the arguments the specification names.
    spec_args = list(inspect.signature(getattr(hookspecs, name)).parameters)
    assert list(inspect.signature(impl).parameters) == spec_args
    pm = pluggy.PluginManager("kara")
    pm.add_hookspecs(hookspecs)
    pm.register(module)  # pluggy validates the implementation against the specification


def test_the_backend_example_registers_a_scheme_whose_stores_open_and_work() -> None:
    ((scheme, factory, options_model, summary),) = _registrations(
        _example("kara_register_backends").kara_register_backends
    )
    assert scheme == "memory" and summary
    assert issubclass(options_model, BackendOptions)
    backend = factory(parse_store_url("memory://docs-example"), options_model())
    backend.put("a/b", b"bytes")
    assert backend.read("a/b") == b"bytes"


def test_the_fallback_backend_example_opens_the_schemes_it_claims_and_no_others() -> None:
    example = _example("kara_register_backends", 1)
    register_plugin(example, "docs-fallback-example")
    try:
        spec = get_backend_spec("mem-docs")
        assert (spec.plugin, spec.scheme) == ("docs-fallback-example", "mem-docs")
        backend = open_backend("mem-docs://fallback-example")
        backend.put("a/b", b"bytes")
        assert backend.read("a/b") == b"bytes"
        # A registered scheme never reaches a fallback; an unclaimed one stays unknown.
        assert get_backend_spec("memory").plugin == "memory"
        with pytest.raises(UnknownSchemeError):
            get_backend_spec("nomem-docs")
    finally:
        unregister_plugin("docs-fallback-example")
        reset_plugins()


def test_the_serializer_example_registers_a_class_that_round_trips() -> None:
    ((name, cls),) = _registrations(_example("kara_register_serializers").kara_register_serializers)
    assert name == "text" and issubclass(cls, Serializer)
    serializer = cls()
    assert serializer.deserialize(serializer.serialize("héllo")) == "héllo"


def test_the_integration_example_registers_what_make_torch_dataset_calls() -> None:
    ((name, integration),) = _registrations(_example("kara_register_integrations").kara_register_integrations)
    assert name == "torch"
    assert integration.make_torch_dataset([1, 2, 3], shuffle=False, auto_distributed=True) == [1, 2, 3]


def test_the_command_example_adds_a_working_subcommand() -> None:
    cli = click.Group("kara")
    _example("kara_register_commands").kara_register_commands(cli=cli)
    result = CliRunner().invoke(cli, ["hello", "file:///tmp/store"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello, file:///tmp/store\n"
