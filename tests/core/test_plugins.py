"""The plugin system: discovery, isolation, registration tables, clashes, lightness."""

from __future__ import annotations

import ast
import inspect
import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest

import kara_core
from kara_core import hookimpl, hookspecs
from kara_core.errors import MissingPluginError, UnknownSchemeError
from kara_core.plugins import (
    get_backend_spec,
    get_serializer_class,
    list_plugins,
    plugin_clashes,
    register_plugin,
    unregister_plugin,
)
from kara_core.serialization import JSONSerializer, Serializer, resolve_serializer
from kara_core.url import BackendOptions, open_backend

TESTS = pathlib.Path(__file__).resolve().parents[1]
HOOK_NAMES = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("kara_")]


@pytest.fixture
def registered() -> Iterator[Callable[[object, str], None]]:
    """Register plugin objects for one test and always unregister them afterwards."""
    names: list[str] = []

    def add(plugin: object, name: str) -> None:
        register_plugin(plugin, name)
        names.append(name)

    yield add
    for name in reversed(names):
        unregister_plugin(name)


def run_python(
    code: str, env: dict[str, str] | None = None, path: list[str] | None = None
) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    if path:
        full_env["PYTHONPATH"] = os.pathsep.join(path)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, check=False
    )


# -- hookspecs ----------------------------------------------------------------------


def test_there_are_the_four_register_style_hooks() -> None:
    assert sorted(HOOK_NAMES) == [
        "kara_register_backends",
        "kara_register_commands",
        "kara_register_integrations",
        "kara_register_serializers",
    ]


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_documented_with_params_and_return(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert ":param" in doc and ":return" in doc, f"{name} lacks the hook docstring template"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_has_a_test_that_implements_it(name: str) -> None:
    # datasette's rule: a hook nobody tests is a hook that silently breaks.
    implemented = set()
    for path in TESTS.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("kara_register_"):
                implemented.add(node.name)
    assert name in implemented


# -- discovery and tables -----------------------------------------------------------


def test_installed_plugins_are_listed_with_versions_and_registrations() -> None:
    by_name = {p.name: p for p in list_plugins()}
    assert by_name["file"].distribution == "kara-file"
    assert by_name["file"].version
    assert by_name["file"].backends == ["file"]
    assert by_name["file"].hooks == ["kara_register_backends"]
    builtin = by_name["kara_core.serialization.builtin"]
    assert builtin.serializers == ["json", "pickle", "raw", "numpy", "zstd"]
    assert builtin.as_dict()["distribution"] == "kara-core"


def test_builtin_serializers_go_through_the_register_hook() -> None:
    assert get_serializer_class("json") is JSONSerializer
    assert isinstance(resolve_serializer("pickle"), kara_core.serialization.PickleSerializer)


def test_a_plugin_serializer_overrides_the_trylast_builtin(registered) -> None:
    class LoudJSON(Serializer):
        def serialize(self, x: object) -> bytes:
            return b"!" + JSONSerializer().serialize(x)

        def deserialize(self, x: bytes) -> object:
            return JSONSerializer().deserialize(x[1:])

    class Plugin:
        @hookimpl
        def kara_register_serializers(self, register):
            register("json", LoudJSON)
            register("loud", LoudJSON)

    registered(Plugin(), "loud-plugin")
    assert get_serializer_class("json") is LoudJSON
    assert isinstance(resolve_serializer("loud"), LoudJSON)


def test_two_plugins_claiming_one_scheme_are_reported_as_a_clash(registered) -> None:
    class First:
        @hookimpl
        def kara_register_backends(self, register):
            register("dup", lambda url, options: None, BackendOptions, "first")

    class Second:
        @hookimpl
        def kara_register_backends(self, register):
            register("dup", lambda url, options: None, BackendOptions, "second")

    registered(First(), "first-dup")
    registered(Second(), "second-dup")
    spec = get_backend_spec("dup")
    clashes = plugin_clashes()
    assert len(clashes) == 1
    loser = "first-dup" if spec.plugin == "second-dup" else "second-dup"
    assert f"backend 'dup' from {loser} ignored" in clashes[0]


def test_an_integration_registered_by_a_plugin_serves_make_torch_dataset(registered) -> None:
    calls = []

    class FakeTorchIntegration:
        def make_torch_dataset(self, ds, **kwargs):
            calls.append((ds, kwargs))
            return "wrapped"

    class Plugin:
        @hookimpl(tryfirst=True)
        def kara_register_integrations(self, register):
            register("torch", FakeTorchIntegration())

    registered(Plugin(), "torch-override")
    assert kara_core.make_torch_dataset("ds", shuffle=True, seed=3) == "wrapped"
    assert calls == [("ds", {"shuffle": True, "auto_distributed": True, "seed": 3})]


def test_make_torch_dataset_without_the_torch_plugin_says_what_to_install() -> None:
    result = run_python(
        """
        import kara_core
        from kara_core.plugins import unregister_plugin, list_plugins
        if any(p.name == "torch" for p in list_plugins()):
            unregister_plugin("torch")
        try:
            kara_core.make_torch_dataset(object())
        except kara_core.errors.MissingPluginError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "no torch integration: pip install kara-torch" in result.stdout


def test_known_scheme_without_its_plugin_names_the_package(registered) -> None:
    installed = {p.name for p in list_plugins()}
    if "oss" in installed:
        unregister_plugin("oss")
    try:
        with pytest.raises(MissingPluginError) as info:
            open_backend("oss://oss-cn-beijing.aliyuncs.com/bucket/prefix", app_key="k", app_secret="s")
        message = str(info.value)
        assert message.startswith("no backend for 'oss://': pip install kara-oss (installed: ")
        assert "file" in message.split("installed: ")[1]
    finally:
        from kara_core.plugins import reset_plugins

        reset_plugins()


def test_unknown_scheme_is_a_different_error() -> None:
    with pytest.raises(UnknownSchemeError, match=r"unknown store scheme 'gopher://'.*installed: .*file"):
        open_backend("gopher://host/path")


# -- isolation of broken plugins ----------------------------------------------------


@pytest.fixture
def broken_plugin_path(tmp_path) -> str:
    """A real installed distribution (dist-info on sys.path) whose entry point fails."""
    (tmp_path / "kara_broken_example.py").write_text("raise RuntimeError('boom at import')\n")
    dist = tmp_path / "kara_broken_example-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kara-broken-example\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[kara.plugins]\nbroken = kara_broken_example\n")
    return str(tmp_path)


def test_a_broken_plugin_is_reported_by_name_and_the_rest_keeps_working(broken_plugin_path) -> None:
    result = run_python(
        """
        import warnings
        warnings.simplefilter("always")
        from kara_core.plugins import list_plugins, plugin_load_errors
        from kara_core.url import open_backend
        infos = {p.name: p for p in list_plugins()}
        print("ERROR:", infos["broken"].error, infos["broken"].distribution, infos["broken"].version)
        print("TRACEBACK:", "boom at import" in plugin_load_errors()["broken"])
        print("FILE WORKS:", type(open_backend("file:///tmp")).__name__)
        """,
        path=[broken_plugin_path],
    )
    assert result.returncode == 0, result.stderr
    assert "ERROR: RuntimeError: boom at import kara-broken-example 1.2.3" in result.stdout
    assert "TRACEBACK: True" in result.stdout
    assert "FILE WORKS: FileBackend" in result.stdout
    assert "kara plugin 'broken' (kara-broken-example) failed to load" in result.stderr


def test_strict_mode_makes_a_broken_plugin_fatal(broken_plugin_path) -> None:
    result = run_python(
        """
        from kara_core.plugins import list_plugins
        from kara_core.errors import PluginLoadError
        try:
            list_plugins()
        except PluginLoadError as exc:
            print("FATAL:", str(exc).splitlines()[0])
        """,
        env={"KARA_STRICT_PLUGINS": "1"},
        path=[broken_plugin_path],
    )
    assert result.returncode == 0, result.stderr
    assert "FATAL: kara plugin 'broken' (kara-broken-example) failed to load: RuntimeError: boom at import" in (
        result.stdout
    )


def test_a_plugin_failing_inside_its_hook_does_not_hide_the_others(registered, recwarn) -> None:
    class Failing:
        @hookimpl
        def kara_register_backends(self, register):
            raise ValueError("bad registration")

    registered(Failing(), "failing-hook")
    assert get_backend_spec("file").plugin == "file"
    info = {p.name: p for p in list_plugins()}["failing-hook"]
    assert "bad registration" in (info.error or "")


# -- import weight --------------------------------------------------------------------


def test_importing_kara_and_loading_every_plugin_imports_no_heavy_library() -> None:
    result = run_python(
        """
        import sys
        import kara_core
        from kara_core.plugins import list_plugins
        names = [p.name for p in list_plugins()]
        heavy = ("oss2", "requests", "torch", "uvicorn", "starlette", "ray", "pyspark", "pyarrow")
        heavy = sorted(m for m in heavy if m in sys.modules)
        print("PLUGINS:", len(names), "HEAVY:", heavy)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY: []" in result.stdout


# -- options models registered by name --------------------------------------------------


class _NamedOptions(BackendOptions):
    """An options model the tests below register as ``"module:Class"``."""

    depth: int = 1


def test_an_options_model_registered_by_name_is_imported_and_validates_when_opened(registered) -> None:
    class ByName:
        @hookimpl
        def kara_register_backends(self, register):
            register("byname", lambda url, options: (url, options), f"{__name__}:_NamedOptions", "by name")

    registered(ByName(), "by-name")
    spec = get_backend_spec("byname")
    assert spec.options == f"{__name__}:_NamedOptions"
    assert spec.options_model is _NamedOptions
    from kara_core.errors import ConfigurationError
    from kara_core.url import validate_options

    assert validate_options("byname", spec.options_model, {"depth": 3}).depth == 3
    with pytest.raises(ConfigurationError, match=r"unknown option 'width' \(valid options: depth\)"):
        validate_options("byname", spec.options_model, {"width": 3})


def test_an_options_model_name_that_does_not_import_fails_the_open_naming_the_plugin(registered) -> None:
    from kara_core.errors import PluginLoadError

    class Missing:
        @hookimpl
        def kara_register_backends(self, register):
            register("gone", lambda url, options: None, "kara_no_such_module_xyz:GoneOptions", "missing")

    registered(Missing(), "missing-options")
    with pytest.raises(PluginLoadError, match="kara plugin 'missing-options' registered the options model "):
        open_backend("gone://x")
    # Other schemes keep working.
    assert get_backend_spec("file").plugin == "file"


def test_an_options_model_that_is_neither_a_class_nor_a_name_is_a_registration_error(registered, recwarn) -> None:
    class Wrong:
        @hookimpl
        def kara_register_backends(self, register):
            register("wrong", lambda url, options: None, "not a reference", "wrong")

    registered(Wrong(), "wrong-options")
    info = {p.name: p for p in list_plugins()}["wrong-options"]
    assert "options_model of 'wrong' must be a class or 'module:Class'" in (info.error or "")
    with pytest.raises(UnknownSchemeError):
        get_backend_spec("wrong")
