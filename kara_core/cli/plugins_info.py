"""``kara plugins``: what is installed, what each plugin registers, what failed."""

from __future__ import annotations

from typing import Any

import click

from .app import cli, plugin_commands
from .options import global_options, json_option
from .output import print_json, print_table


def plugin_report() -> dict[str, Any]:
    """Return every plugin with versions, hooks, registrations and errors, plus clashes."""
    from ..plugins import list_plugins, plugin_clashes, plugin_load_errors

    commands = plugin_commands()
    tracebacks = {**plugin_load_errors(), **commands.errors}
    entries = []
    for p in list_plugins():
        entry = p.as_dict()
        entry["commands"] = commands.commands.get(p.name, [])
        if p.name in commands.errors and not entry["error"]:
            entry["error"] = "failed in kara_register_commands: " + commands.errors[p.name].strip().splitlines()[-1]
        entry["traceback"] = tracebacks.get(p.name)
        entries.append(entry)
    return {"plugins": entries, "clashes": [*plugin_clashes(), *commands.clashes]}


@cli.command("plugins")
@json_option
@click.option("--tracebacks", is_flag=True, help="Show the full traceback of plugins that failed.")
@global_options
def plugins_command(as_json: bool, tracebacks: bool) -> None:
    """List installed kara plugins: versions, what each registers, load errors, clashes.

    \b
    Examples:
      kara plugins
      kara plugins --json | jq '.plugins[] | select(.error)'
    """
    report = plugin_report()
    if as_json:
        print_json(report)
        return
    rows = []
    for p in report["plugins"]:
        provides = [
            f"{label}: {', '.join(p[field])}"
            for label, field in (
                ("backends", "backends"),
                ("serializers", "serializers"),
                ("integrations", "integrations"),
                ("commands", "commands"),
            )
            if p[field]
        ]
        status = "; ".join([*provides, *([f"FAILED: {p['error']}"] if p["error"] else [])]) or "-"
        rows.append([p["name"], p["distribution"] or "-", p["version"] or "-", status])
    print_table(["PLUGIN", "DISTRIBUTION", "VERSION", "PROVIDES"], rows)
    for clash in report["clashes"]:
        click.echo(f"clash: {clash}")
    if tracebacks:
        for p in report["plugins"]:
            if p["traceback"]:
                click.echo(f"\n--- {p['name']} ---\n{p['traceback'].rstrip()}")
