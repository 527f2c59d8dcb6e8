"""kara's main job on the embedded default, a file:// store in the working tree.

Writes a versioned row dataset, reads it back sequentially and at random, appends a new
version, then saves a folder (a "checkpoint") as a version and loads it elsewhere.
Run it with `bash scripts/quickstart`, or directly once kara-core and kara-file are
installed: `python examples/quickstart.py [STORE_URL]`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import kara_core as kara_storage  # the kara-storage 2.x API, unchanged


def main(url: str) -> None:
    storage = kara_storage.KaraStorage(url)
    print(f"store: {storage.url}")

    # Row storage: a dataset version is created by opening it for writing.
    version = time.strftime("%Y%m%d-%H%M%S")
    with storage.open_dataset("quickstart", "corpus", "w", version=version) as ds:
        for i in range(10_000):
            ds.write({"id": i, "text": f"sample text number {i}", "tokens": list(range(i % 8))})
        ds.write_many({"id": i, "text": "batch"} for i in range(10_000, 20_000))
    print(f"wrote 20,000 records to quickstart/corpus version {version}")

    ds = storage.open_dataset("quickstart", "corpus", "r")  # version="latest"
    first = ds.read()
    count = 1 + sum(1 for _ in ds)
    print(f"read {count} records sequentially; first = {first}")
    print(f"random access: ds[12345] = {ds[12345]}, ds[-1] = {ds[-1]}")
    ds.seek(5, 2)  # five records back from the end
    print(f"seek(5, 2) then read -> id {ds.read()['id']}; read at the end -> {ds.seek(0, 2) and ds.read(default=None)}")
    print(f"versions: {storage.list_versions('quickstart', 'corpus')}")

    # Object storage: a folder saved as a version, deduplicated by content hash.
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "checkpoint")
        os.makedirs(os.path.join(ckpt, "shards"))
        with open(os.path.join(ckpt, "config.json"), "w") as fh:
            fh.write('{"lr": 0.001}\n')
        for k in range(4):
            with open(os.path.join(ckpt, "shards", f"{k}.bin"), "wb") as fh:
                fh.write(os.urandom(256 * 1024))
        saved = storage.save_directory("quickstart", "checkpoint", ckpt, progress_bar=False)
        target = os.path.join(tmp, "restored")
        loaded = storage.load_directory("quickstart", "checkpoint", target, progress_bar=False)
        files = sorted(os.path.relpath(os.path.join(d, f), target) for d, _, fs in os.walk(target) for f in fs)
        files = [f for f in files if not f.startswith(".kara")]
        print(f"saved checkpoint version {saved}, loaded version {loaded}: {files}")
    print("quickstart finished")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "file://quickstart-store")
