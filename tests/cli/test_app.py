"""The command line as a whole: versions, help, error reporting, credentials, plugins."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import click
import pytest

import kara_core
from kara_core import hookimpl
from kara_core.cli import cli
from kara_core.plugins import get_plugin_manager, register_plugin, reset_plugins, unregister_plugin
from kara_core.url import BackendOptions
from kara_core.version import __version__


@pytest.fixture
def plugin() -> Iterator[Callable[[object, str], None]]:
    """Register plugin objects for one test; unregister them and their commands afterwards."""
    names: list[str] = []

    def add(obj: object, name: str) -> None:
        register_plugin(obj, name)
        names.append(name)
        cli.reset_plugin_commands()

    yield add
    for name in reversed(names):
        unregister_plugin(name)
    cli.reset_plugin_commands()


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
    return paths


# -- version and help --------------------------------------------------------------


def test_version_command_prints_the_version(kara):
    result = kara("version")
    assert result.exit_code == 0 and result.stdout == f"kara {__version__}\n"


def test_version_option_prints_the_version(kara):
    assert kara("--version").stdout == f"kara {__version__}\n"


def test_version_json_lists_plugin_versions(kara):
    data = json.loads(kara("version", "--json").stdout)
    assert data["kara"] == __version__ and data["plugins"]["file"]


@pytest.mark.parametrize("path", _command_paths(cli), ids=" ".join)
def test_every_command_has_help_with_examples(kara, path):
    result = kara(*path, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout
    command = cli.commands[path[0]] if len(path) == 1 else cli.commands[path[0]].commands[path[1]]
    # Groups show kara-storage 2.x's form; commands show examples.
    assert ("kara_storage" if isinstance(command, click.Group) else "Examples:") in result.stdout


def test_root_help_lists_the_commands(kara):
    result = kara("--help")
    for name in ("ls", "info", "cat", "import", "verify", "obj", "row", "view", "plugins", "version"):
        assert f"\n  {name} " in result.stdout


# -- errors -------------------------------------------------------------------------


def test_unknown_scheme_is_one_line_error(kara):
    result = kara("ls", "foo://somewhere")
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        "kara: error: unknown store scheme 'foo://' in 'foo://somewhere': no kara plugin provides it"
    )


def test_known_scheme_without_its_plugin_names_the_package(kara):
    if get_plugin_manager().has_plugin("oss"):
        unregister_plugin("oss")
    try:
        result = kara("ls", "oss://oss-cn-beijing.aliyuncs.com/bucket")
    finally:
        reset_plugins()
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith(
        "kara: error: no backend for 'oss://': pip install kara-oss (installed: "
    )
    assert "Traceback" not in result.stderr


def test_path_without_scheme_is_explained(kara, tmp_path):
    result = kara("ls", str(tmp_path))
    assert result.exit_code == 1
    assert "is not a store URL: expected scheme://location" in result.stderr


def test_usage_errors_exit_two(kara, store_url):
    result = kara("cat", store_url, "ns")
    assert result.exit_code == 2 and "Missing argument 'KEY'" in result.stderr


# -- credentials ------------------------------------------------------------------------


class _CredentialOptions(BackendOptions):
    app_key: str | None = None
    app_secret: str | None = None


def test_app_key_given_to_a_file_store_is_ignored_with_a_warning(kara, store_url):
    result = kara("ls", store_url, "--app-key", "AK")
    assert result.exit_code == 0 and "ns" in result.stdout
    assert result.stderr == "kara: warning: --app-key ignored: file:// stores take no such option\n"


def test_oss_credentials_in_the_environment_do_not_break_file_stores(kara, store_url):
    env = {"OSS_ACCESS_KEY_ID": "AK", "OSS_ACCESS_KEY_SECRET": "SK"}
    result = kara("ls", store_url, "--kind", "row", env=env)
    assert result.exit_code == 0 and "ns" in result.stdout


def test_oss_credentials_in_the_environment_reach_stores_that_take_them(kara, plugin, tmp_path):
    seen: list[BackendOptions] = []

    class CredentialStore:
        @hookimpl
        def kara_register_backends(self, register):
            def factory(url, options):
                from kara_core.url import open_backend

                seen.append(options)
                return open_backend(f"file://{tmp_path}")

            register("credtest", factory, _CredentialOptions, "test")

    plugin(CredentialStore(), "credtest-plugin")
    with kara_core.KaraStorage(f"file://{tmp_path}").open_dataset("ns", "k", "w", version="1") as ds:
        ds.write(1)
    result = kara("ls", "credtest://x", env={"OSS_ACCESS_KEY_ID": "AK", "OSS_ACCESS_KEY_SECRET": "SK"})
    assert result.exit_code == 0
    assert (seen[0].app_key, seen[0].app_secret) == ("AK", "SK")


# -- plugin commands --------------------------------------------------------------------


class _HelloPlugin:
    @hookimpl
    def kara_register_commands(self, cli):
        @cli.command("hello")
        @click.argument("name")
        def hello(name):
            """Say hello (a plugin's command)."""
            click.echo(f"hello {name}")


class _BrokenCommandsPlugin:
    @hookimpl
    def kara_register_commands(self, cli):
        raise RuntimeError("this plugin is broken")


class _ClashingPlugin:
    @hookimpl
    def kara_register_commands(self, cli):
        @cli.command("ls")
        def fake_ls():
            """Not the real ls."""
            click.echo("fake")


def test_plugin_command_runs_and_shows_in_help(kara, plugin):
    plugin(_HelloPlugin(), "hello-plugin")
    assert kara("hello", "kara").stdout == "hello kara\n"
    assert "hello" in kara("--help").stdout


def test_plugins_json_lists_what_each_plugin_registers(kara, plugin):
    plugin(_HelloPlugin(), "hello-plugin")
    report = json.loads(kara("plugins", "--json").stdout)
    by_name = {p["name"]: p for p in report["plugins"]}
    assert by_name["hello-plugin"]["commands"] == ["hello"]
    assert by_name["file"]["backends"] == ["file"] and by_name["file"]["distribution"] == "kara-file"
    assert "json" in by_name["kara_core.serialization.builtin"]["serializers"]


def test_broken_plugin_does_not_break_other_commands(kara, plugin, store_url):
    plugin(_BrokenCommandsPlugin(), "broken-plugin")
    plugin(_HelloPlugin(), "hello-plugin")
    assert kara("hello", "x").stdout == "hello x\n"
    assert kara("ls", store_url, "--kind", "row").exit_code == 0


def test_broken_plugin_is_reported_by_kara_plugins(kara, plugin):
    plugin(_BrokenCommandsPlugin(), "broken-plugin")
    result = kara("plugins")
    line = next(x for x in result.stdout.splitlines() if x.startswith("broken-plugin"))
    assert "FAILED: failed in kara_register_commands: RuntimeError: this plugin is broken" in line
    assert "this plugin is broken" in kara("plugins", "--tracebacks").stdout.split("--- broken-plugin ---")[1]


def test_unknown_command_mentions_plugins_that_failed(kara, plugin):
    plugin(_BrokenCommandsPlugin(), "broken-plugin")
    result = kara("no-such-command")
    assert result.exit_code == 2
    assert "broken-plugin" in result.stderr and "kara plugins" in result.stderr


def test_plugin_cannot_replace_a_built_in_command(kara, plugin, store_url):
    plugin(_ClashingPlugin(), "clash-plugin")
    assert kara("ls", store_url, "--kind", "row").stdout.startswith("KIND")
    assert "clash: command 'ls' from clash-plugin ignored: already provided by kara-core" in kara("plugins").stdout
