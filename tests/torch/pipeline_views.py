"""The mixture and packed view the pipeline tests load, built the same way in every process."""

from __future__ import annotations

from typing import Any

import numpy as np

import kara_core
from kara_core import KaraStorage

#: Records of the mixed sources and of the token dataset.
MIXED = {"web": 500, "code": 180, "books": 45}
TOKEN_RECORDS = 240
WEIGHTS = {"web": 0.6, "code": 0.3, "books": 0.1}
SEQ_LEN = 64


def token_record(r: int) -> np.ndarray:
    """Token record ``r``: unique tokens, 1 to 120 of them."""
    return (r * 1000 + np.arange(1 + (r * 53) % 120)).astype(np.int32)


def write_store(url: str) -> None:
    """Write the sources (json) and the token dataset (numpy) into the store at ``url``."""
    store = KaraStorage(url, fsync=False)
    for name, count in MIXED.items():
        with store.open_dataset("pipe", name, "w", version="1") as ds:
            ds.write_many({"src": name, "i": i} for i in range(count))
    with store.open_dataset("pipe", "tokens", "w", version="1", serialization="numpy") as ds:
        ds.write_many(token_record(r) for r in range(TOKEN_RECORDS))


def build(url: str, kind: str) -> Any:
    """``"mix"``: the three sources mixed (cycle, with source names); ``"pack"``: packed tokens."""
    store = KaraStorage(url)
    if kind == "mix":
        sources = {name: store.open_dataset("pipe", name) for name in MIXED}
        return kara_core.mix(sources, WEIGHTS, seed=5, exhausted="cycle", with_source=True)
    return kara_core.pack(store.open_dataset("pipe", "tokens"), field=None, seq_len=SEQ_LEN, eos_id=-1)


def sample_id(kind: str, sample: Any) -> Any:
    """A JSON-friendly identity of one sample."""
    if kind == "mix":
        name, record = sample
        return f"{name}:{record['i']}"
    return [int(sample[0]), int(sample[-1])]


def torch_options(kind: str) -> dict[str, Any]:
    """make_torch_dataset options: a mixture orders itself, packed samples are shuffled."""
    return {"shuffle": kind == "pack"}
