"""Item 1: every module and name of the 2.1.5 wheel that scripts use exists in kara.

The 2.1.5 list was read from the installed wheel (.venv-k215); each name is an alias of
the kara object, never a second implementation.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import kara_core
import kara_core as kara_storage
from kara_core import KaraStorage
from kara_core.obj import ObjectStore
from kara_core.row import RowDataset
from kara_core.serialization import JSONSerializer, NoSerializer, PickleSerializer, Serializer

ALIASES = [
    ("kara_core.abc", "Serializer", Serializer),
    ("kara_core.abc", "Dataset", RowDataset),
    ("kara_core.abc", "KaraStorageBase", KaraStorage),
    ("kara_core.abc.serializer", "Serializer", Serializer),
    ("kara_core.serialization.json", "JSONSerializer", JSONSerializer),
    ("kara_core.serialization.pickle", "PickleSerializer", PickleSerializer),
    ("kara_core.serialization.raw", "NoSerializer", NoSerializer),
    ("kara_core.pytorch", "make_torch_dataset", kara_core.make_torch_dataset),
    ("kara_core.pytorch", "RowDataset", RowDataset),
    ("kara_core.row", "RowDataset", RowDataset),
    ("kara_core.object", "ObjectStore", ObjectStore),
    ("kara_core", "RowDataset", RowDataset),
    ("kara_core", "KaraStorage", KaraStorage),
]


@pytest.mark.parametrize(("module", "name", "target"), ALIASES, ids=[f"{m}.{n}" for m, n, _ in ALIASES])
def test_each_2x_name_is_an_alias_of_the_kara_object(module: str, name: str, target: object) -> None:
    assert getattr(importlib.import_module(module), name) is target


def test_2x_submodules_are_attributes_right_after_import() -> None:
    code = (
        "import kara_core as kara_storage\n"
        "s = kara_storage.serialization\n"
        "print(kara_storage.abc.Serializer.__name__, s.json.JSONSerializer.__name__,"
        " s.pickle.PickleSerializer.__name__, s.raw.NoSerializer.__name__,"
        " kara_storage.pytorch.make_torch_dataset.__name__,"
        " kara_storage.row.RowDataset.__name__, kara_storage.object.ObjectStore.__name__)\n"
        "import sys; print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "Serializer JSONSerializer PickleSerializer NoSerializer make_torch_dataset RowDataset ObjectStore"
    assert out[1] == "False"  # reaching kara_storage.pytorch does not import torch


@pytest.mark.parametrize(
    ("module", "name", "hint"),
    [
        ("kara_core.abc", "StorageBase", "Backend"),
        ("kara_core.abc", "StorageFileBase", "binary streams"),
        ("kara_core.abc", "DatasetIterator", "make_torch_dataset"),
        ("kara_core.object", "ObjectDataset", "save_directory"),
    ],
)
def test_2x_internals_without_a_kara_counterpart_say_what_to_use(module: str, name: str, hint: str) -> None:
    with pytest.raises(AttributeError, match=hint):
        getattr(importlib.import_module(module), name)


class Upper(kara_storage.abc.Serializer):
    """A custom serializer written the 2.x way: a subclass of kara_storage.abc.Serializer."""

    def serialize(self, x: str) -> bytes:
        return x.upper().encode()

    def deserialize(self, x: bytes) -> str:
        return x.decode()


def test_a_serializer_subclassing_the_2x_base_class_works(tmp_path: Path) -> None:
    store = kara_storage.KaraStorage(f"file://{tmp_path}/store")
    with store.open_dataset("ns", "k", "w", version="1", serialization=Upper()) as ds:
        ds.write("shout")
    with store.open_dataset("ns", "k", serialization=Upper()) as ds:
        assert ds.read() == "SHOUT"
    assert isinstance(ds, kara_storage.abc.Dataset)


def test_slice_in_place_follows_2x(tmp_path: Path) -> None:
    store = kara_storage.KaraStorage(f"file://{tmp_path}/store")
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many(range(100))
    ds = store.open_dataset("ns", "k")
    ds.read()
    assert ds.slice_(10, 20) is None
    assert (len(ds), ds.tell(), ds.read(), ds[-1]) == (20, 0, 10, 29)
    ds.slice_(5)  # the rest of the current slice, from its 5th record
    assert (len(ds), ds[0], ds[-1]) == (15, 15, 29)
    ds.slice_(0, 1000)  # clamped to the whole version, as 2.x does
    assert (len(ds), ds[-1]) == (85, 99)
    ds.slice_(200)
    assert (len(ds), list(ds)) == (0, [])
