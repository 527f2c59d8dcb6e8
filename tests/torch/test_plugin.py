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


def test_a_fresh_process_reads_a_file_store_through_a_dataloader_without_pydantic(tmp_path) -> None:
    # The start-up bench/startup.py times: open a file:// store, make_torch_dataset, first
    # sample through DataLoader(batch_size=None). pydantic (about 0.15 s of a fresh
    # process with the collection it triggers) must not load on that path.
    url = f"file://{tmp_path}"
    write = (
        f"import kara_core\nwith kara_core.KaraStorage({url!r}).open_dataset('ns', 'key', 'w', version='1') as ds:\n"
        "    ds.write_many({'i': i} for i in range(100))\n"
    )
    subprocess.run([sys.executable, "-c", write], capture_output=True, text=True, check=True)
    read = (
        "import sys, torch\nfrom torch.utils.data import DataLoader\nimport kara_core\n"
        f"rows = kara_core.KaraStorage({url!r}).open_dataset('ns', 'key')\n"
        "ds = kara_core.make_torch_dataset(rows, shuffle=True)\n"
        "first = next(iter(DataLoader(ds, batch_size=None)))\n"
        "print(sorted(first), 0 <= first['i'] < 100, [m for m in sys.modules if m.startswith('pydantic')])"
    )
    out = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['i'] True []"
