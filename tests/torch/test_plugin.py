"""kara-torch as a plugin: found through its entry point, cheap to load."""

from __future__ import annotations

import subprocess
import sys

from kara_core.plugins import get_integration, list_plugins


def test_torch_integration_is_registered_by_the_kara_torch_distribution() -> None:
    assert type(get_integration("torch")).__name__ == "TorchIntegration"
    info = next(plugin for plugin in list_plugins() if plugin.name == "torch")
    assert info.distribution == "kara-torch" and info.integrations == ["torch"]


def test_loading_the_plugin_does_not_import_torch_or_numpy() -> None:
    code = (
        "import sys, kara_core.plugins as p; p.get_integration('torch');"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
