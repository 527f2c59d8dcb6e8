"""`import kara_core as kara_storage` offers the names kara-storage 2.1.5 scripts use."""

from __future__ import annotations

import kara_core as kara_storage
from kara_core import errors


def test_the_2x_top_level_names_exist() -> None:
    for name in ("KaraStorage", "serialization", "make_torch_dataset", "version", "RowDataset"):
        assert hasattr(kara_storage, name), name
    assert isinstance(kara_storage.version, str)


def test_the_2x_serialization_module_names_exist() -> None:
    for name in ("Serializer", "JSONSerializer", "PickleSerializer", "NoSerializer"):
        assert hasattr(kara_storage.serialization, name), name


def test_errors_keep_the_builtin_types_2x_code_catches() -> None:
    assert issubclass(errors.DatasetNotFoundError, ValueError)
    assert issubclass(errors.DatasetNotFoundError, FileNotFoundError)
    assert issubclass(errors.VersionNotFoundError, ValueError)
    assert issubclass(errors.UnknownSchemeError, ValueError)
    assert issubclass(errors.ModeError, RuntimeError)


def test_error_messages_are_actionable() -> None:
    assert str(errors.MissingPluginError("backend for 'oss://'", "kara-oss", ["file"])) == (
        "no backend for 'oss://': pip install kara-oss (installed: file)"
    )
    assert str(errors.CorruptDatasetError("row/ns/k/1/index/0.blk", 4096, "partial entry")) == (
        "corrupt data in row/ns/k/1/index/0.blk at offset 4096: partial entry"
    )
    missing = errors.VersionNotFoundError("row", "ns", "k", "9", ["1", "2"])
    assert str(missing) == "version '9' of ns/k does not exist; available: '1', '2'"
    assert "read-only" in str(errors.ReadOnlyStoreError("https://h/p", "append to x"))
