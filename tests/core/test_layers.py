"""The import contracts of pyproject.toml: complete, and failing on a new cycle.

``scripts/test`` runs ``lint-imports`` on the real tree before pytest; these tests check
that the contracts cover every module of kara_core and that they do catch a cycle, by
adding one to a copy of the package.
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import kara_core

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["importlinter"]


def _layers() -> list[str]:
    (contract,) = [c for c in _config()["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def test_every_module_of_kara_core_has_a_layer() -> None:
    # A module left out of the layers contract could import anything: each new module
    # or package of kara_core must be given its place.
    modules = {info.name for info in pkgutil.iter_modules(kara_core.__path__)}
    layers = _layers()
    assert sorted(layers) == sorted(set(layers)), "a module is named in two layers"
    missing, gone = sorted(modules - set(layers)), sorted(set(layers) - modules)
    assert not missing, f"give {missing} a layer in pyproject.toml [tool.importlinter] (docs/architecture.md)"
    assert not gone, f"{gone} named in the layers contract no longer exist"


def _lint_copy(tmp_path: Path, edit: tuple[str, str, str] | None) -> subprocess.CompletedProcess:
    """Run lint-imports with the project's contracts over a copy of kara_core and kara_file.

    ``edit`` is (file under the copy, text in it, line added after that text).
    """
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "kara_core", tmp_path / "kara_core", ignore=ignore)
    shutil.copytree(ROOT / "plugins/kara_file/kara_file", tmp_path / "kara_file", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if edit is not None:
        module, anchor, added = edit
        path = tmp_path / module
        text = path.read_text()
        assert anchor in text
        path.write_text(text.replace(anchor, anchor + added, 1))
    # The copy comes first on the path, before the editable install of the real tree.
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )


def test_the_contracts_hold_on_an_unchanged_copy(tmp_path: Path) -> None:
    result = _lint_copy(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "anchor", "added", "reported"),
    [
        pytest.param(
            "kara_core/backend.py",
            "from .errors import CorruptDatasetError, NotFoundError, ReadOnlyStoreError, UnsafePathError\n",
            "from .url import open_backend\n",
            ["kara_core.backend is not allowed to import kara_core.url", "kara_core.backend -> kara_core.url (l."],
            id="a new cycle: backend imports url",
        ),
        pytest.param(
            "kara_core/row/dataset.py",
            "from .writer import RowWriter\n",
            "from .store import RowStore\n",
            ["No cycles are allowed in kara_core.row", "-> .dataset (1 import)"],
            id="a cycle inside a layer: row.dataset imports row.store",
        ),
        pytest.param(
            "kara_core/url.py",
            "from .errors import ConfigurationError\n",
            "import kara_file\nimport torch\n",
            ["kara_core.url -> kara_file", "kara_core.url -> torch"],
            id="the core imports a plugin and torch",
        ),
        pytest.param(
            "kara_file/backend.py",
            "from kara_core.localdisk import raise_disk_error, write_file\n",
            "from kara_core.localdisk._direct import cached\n",
            ["kara_file.backend -> kara_core.localdisk._direct"],
            id="a plugin reaches into the private local-disk module",
        ),
    ],
)
def test_an_import_against_the_contracts_fails_naming_it(
    tmp_path: Path, module: str, anchor: str, added: str, reported: list[str]
) -> None:
    result = _lint_copy(tmp_path, (module, anchor, added))
    assert result.returncode == 1
    for line in reported:
        assert line in result.stdout
