"""Single-file streams over oss://: torch.save into a version (multipart), torch.load back."""

from __future__ import annotations

import pytest
import torch
from kara_oss.testing import OSSTestServer

from kara_core import KaraStorage
from kara_core.errors import DatasetNotFoundError
from kara_core.obj.stream import BlobReader

KiB = 1024


def test_torch_save_and_load_round_trip_through_a_multipart_stream(oss_server: OSSTestServer) -> None:
    store = KaraStorage(
        oss_server.url("streams"), **oss_server.options, multipart_threshold=100 * KiB, part_size=100 * KiB
    )
    state = {"w": torch.randn(300, 256), "step": 7}  # ~300 KiB: several parts
    with store.open_file("ck", "model", "weights/model.pt", "wb", version="v1") as fh:
        torch.save(state, fh)
    assert fh.version == "v1"
    assert store.list_versions("ck", "model", kind="obj") == ["v1"]
    with store.open_file("ck", "model", "weights/model.pt") as fh:
        assert isinstance(fh, BlobReader)
        loaded = torch.load(fh, weights_only=True)
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 7
    assert store.objects.verify("ck", "model") == []


def test_an_exception_while_saving_to_oss_publishes_nothing(oss_server: OSSTestServer) -> None:
    store = KaraStorage(oss_server.url("streams"), **oss_server.options)
    with pytest.raises(RuntimeError), store.open_file("ck", "model", "model.pt", "wb") as fh:
        torch.save({"w": torch.ones(10)}, fh)
        raise RuntimeError("training crashed")
    with pytest.raises(DatasetNotFoundError):
        store.list_versions("ck", "model", kind="obj")
