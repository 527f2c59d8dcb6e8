"""The root ``kara`` group: built-in commands, plugin commands, and error reporting."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import click

from ..errors import KaraError, MissingPluginError, UnknownSchemeError
from ..version import __version__
from .options import DEBUG_META, global_options, json_option
from .output import print_json

__all__ = ["CommandError", "PluginCommands", "cli", "main", "plugin_commands"]

#: Exit status when a command fails with an error (usage errors are 2, as in click).
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
# 128 + SIGPIPE: what a C tool killed by a closed pipe reports.
EXIT_BROKEN_PIPE = 141

ALIASES = {"object": "obj"}
#: Commands kara's own plugins add, and the distribution to install for each.
KNOWN_PLUGIN_COMMANDS = {"serve": "'kara-http[server]'"}


class CommandError(KaraError):
    """A command cannot do what was asked; the message says why and what to do instead."""


@dataclass
class PluginCommands:
    """What the ``kara_register_commands`` hook did: commands per plugin, failures, clashes."""

    commands: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    clashes: list[str] = field(default_factory=list)


class KaraGroup(click.Group):
    """The root group: loads plugin commands on demand and reports errors in one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins: PluginCommands | None = None

    def plugin_commands(self) -> PluginCommands:
        """Call every plugin's ``kara_register_commands``, each in isolation, once."""
        if self._plugins is None:
            self._plugins = _register_plugin_commands(self)
        return self._plugins

    def reset_plugin_commands(self) -> None:
        """Remove the commands plugins added; the next lookup asks the plugins again."""
        if self._plugins is not None:
            for names in self._plugins.commands.values():
                for name in names:
                    self.commands.pop(name, None)
        self._plugins = None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return a built-in command, else load plugins and look for theirs."""
        cmd_name = ALIASES.get(cmd_name, cmd_name)
        if cmd_name not in self.commands:
            found = self.plugin_commands()
            if cmd_name not in self.commands:
                if cmd_name in KNOWN_PLUGIN_COMMANDS:
                    return _missing_plugin_command(cmd_name, KNOWN_PLUGIN_COMMANDS[cmd_name])
                _note_plugin_failures(found)
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return the built-in and plugin command names (for ``--help``)."""
        self.plugin_commands()
        return sorted(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn failures into one message on stderr and an exit status."""
        load_plugins_quietly()
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("kara: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(EXIT_BROKEN_PIPE)
        except Exception as exc:
            if ctx.meta.get(DEBUG_META):
                raise
            click.echo(f"kara: error: {describe_error(exc)}", err=True)
            if isinstance(exc, (MissingPluginError, UnknownSchemeError)):
                _note_plugin_failures(None)
            ctx.exit(EXIT_ERROR)


def _missing_plugin_command(name: str, package: str) -> click.Command:
    # Stands in for a known plugin command whose distribution is not installed: whatever
    # the arguments, it says what to install (as a missing backend does).
    def fail() -> None:
        from ..plugins import list_plugins

        installed = sorted({p.distribution for p in list_plugins() if p.distribution})
        raise MissingPluginError(f"command 'kara {name}'", package, installed)

    return click.Command(
        name,
        callback=fail,
        help=f"(not installed: pip install {package})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    )


def load_plugins_quietly() -> None:
    """Load plugins without printing their load failures.

    Failures are kept by :mod:`kara_core.plugins` and shown where they matter: by
    ``kara plugins``, and next to a "no backend" or "no such command" error.
    """
    from ..plugins import list_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list_plugins()


def describe_error(exc: BaseException) -> str:
    """Return the one-line message shown for ``exc`` (kara errors as they are)."""
    if isinstance(exc, KaraError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc} (this looks like a bug; run with --debug for the traceback)"


def _silence_stdout() -> None:
    # The reader went away (`kara cat ... | head`): point stdout at /dev/null so the
    # interpreter's final flush does not raise a second BrokenPipeError at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _register_plugin_commands(group: click.Group) -> PluginCommands:
    from ..plugins import get_plugin_manager

    result = PluginCommands()
    load_plugins_quietly()
    caller = get_plugin_manager().hook.kara_register_commands
    for impl in reversed(caller.get_hookimpls()):
        before = dict(group.commands)
        try:
            impl.function(cli=group)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the CLI
            result.errors[impl.plugin_name] = "".join(traceback.format_exception(exc))
            group.commands.clear()
            group.commands.update(before)
            continue
        added = []
        for name, command in list(group.commands.items()):
            if name in before and before[name] is not command:
                group.commands[name] = before[name]
                owner = _owner(result, name)
                result.clashes.append(f"command {name!r} from {impl.plugin_name} ignored: already provided by {owner}")
            elif name not in before:
                added.append(name)
        result.commands[impl.plugin_name] = sorted(added)
    return result


def _owner(result: PluginCommands, name: str) -> str:
    for plugin, names in result.commands.items():
        if name in names:
            return plugin
    return "kara-core"


def _note_plugin_failures(found: PluginCommands | None) -> None:
    from ..plugins import plugin_load_errors

    failed = set(plugin_load_errors())
    if found is not None:
        failed |= set(found.errors)
    if failed:
        names = ", ".join(sorted(failed))
        click.echo(f"kara: note: plugin(s) {names} failed to load; run `kara plugins` for details", err=True)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"kara {__version__}")
        ctx.exit()


@click.group(
    cls=KaraGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the kara version and exit.",
)
@global_options
def cli() -> None:
    """kara: versioned row datasets and directory versions for ML training data.

    A store is a URL: file:///abs/path, file://relative/path, oss://endpoint/bucket/prefix,
    https://host/prefix (the last two need the kara-oss / kara-http plugins). Commands
    that take a URL read it from KARA_URL when it is left out.

    \b
    Examples:
      kara ls file:///data/store
      kara cat file:///data/store corpus train --end 5 | jq .
      kara row file:///data/store view corpus train --begin 100
      kara_storage obj oss://oss-cn-beijing.aliyuncs.com/bucket save models bert ./ckpt
    """


@cli.command("version")
@json_option
@global_options
def version_command(as_json: bool) -> None:
    """Print the kara version (and, with --json, the installed plugins' versions).

    \b
    Examples:
      kara version
      kara version --json
    """
    if not as_json:
        click.echo(f"kara {__version__}")
        return
    from ..plugins import list_plugins

    plugins = list_plugins()
    print_json(
        {
            "kara": __version__,
            "python": sys.version.split()[0],
            "plugins": {p.name: p.version for p in plugins if p.distribution != "kara-core"},
        }
    )


def plugin_commands() -> PluginCommands:
    """Return what plugins added to the ``kara`` command line (loading them if needed)."""
    assert isinstance(cli, KaraGroup)
    return cli.plugin_commands()


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``kara`` and ``kara_storage`` scripts."""
    return cli.main(args=argv, prog_name=os.path.basename(sys.argv[0]) if argv is None else "kara")
