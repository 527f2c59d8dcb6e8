"""A kara-storage 2.x script, written from the 2.1.5 README and what its wheel exposes.

It runs unchanged under kara-storage 2.1.5 and under kara (``import kara_core as
kara_storage``) and prints the same lines under both:

    python examples/kara_storage_2x.py [WORKDIR]

It uses the 2.x calls scripts really make: ``storage.open`` and ``open_dataset`` with
int and string versions, a serializer subclassing ``kara_storage.abc.Serializer``, the
``kara_storage.serialization.*`` modules, ``read()`` until ``EOFError``, ``seek`` with
every ``whence``, ``pread``/``ds[i]``/``slice``/``slice_``, ``get_row_meta``, names
with ``/`` (nested folders), ``save_directory(..., version="best")`` every "epoch",
``load_directory``, and the builtin exceptions 2.x code catches.
"""

import os
import sys
import tempfile

try:
    import kara_core as kara_storage
except ImportError:
    import kara_storage

# After `import kara_storage` 2.1.5 has its submodules as attributes; so has kara.
Serializer = kara_storage.abc.Serializer
PickleSerializer = kara_storage.serialization.pickle.PickleSerializer


class UpperSerializer(Serializer):
    """Stores strings upper-cased: a custom serializer as the README shows."""

    def serialize(self, x):
        return x.upper().encode("utf-8")

    def deserialize(self, x):
        return x.decode("utf-8")


def drain(ds):
    records = []
    while True:
        try:
            records.append(ds.read())
        except EOFError:
            return records


def main(workdir):
    os.chdir(workdir)
    storage = kara_storage.KaraStorage("file://my/database")  # relative to the working directory

    # Rows: write, flush, close; int versions become strings.
    ds = storage.open_dataset("corpus", "train", "w", version=1)
    for i in range(10):
        ds.write({"id": i, "text": f"sample {i}"})
    ds.flush()
    ds.close()
    ds = storage.open_dataset("corpus", "train", "r")
    print("read:", [r["id"] for r in drain(ds)])
    ds.seek(0, 0)
    print("seek(0, 0) then read:", ds.read()["id"])
    ds.seek(2, 1)
    print("seek(2, 1) then read:", ds.read()["id"])
    ds.seek(3, 2)
    print("seek(3, 2) then read:", ds.read()["id"])
    ds.seek(0, 2)
    try:
        ds.read()
    except EOFError:
        print("read at the end: EOFError")
    print("pread(4), ds[9], len, size:", ds.pread(4)["id"], ds[9]["id"], len(ds), ds.size())
    print("slice(2, 3):", [r["id"] for r in ds.slice(2, 3)])
    ds.slice_(5, 2)
    print("slice_(5, 2):", [r["id"] for r in drain(ds)])
    try:
        ds[5]
    except IndexError:
        print("ds[5] of the slice: IndexError")
    ds.close()
    try:
        ds.read()
    except RuntimeError:
        print("read after close: RuntimeError")
    print("meta:", storage.get_row_meta("corpus", "train"))

    # Serializers: pickle, and a custom one; storage.open is the README's name.
    ds = storage.open("corpus", "pairs", "w", version="p1", serialization=PickleSerializer())
    ds.write(("tuple", 1, b"\x00\x01"))
    ds.close()
    ds = storage.open("corpus", "pairs", "r", serialization=kara_storage.serialization.PickleSerializer())
    print("pickle:", drain(ds))
    ds = storage.open_dataset("corpus", "shout", "w", version="1", serialization=UpperSerializer())
    ds.write("hello")
    ds.close()
    print("custom:", drain(storage.open_dataset("corpus", "shout", "r", serialization=UpperSerializer())))

    # Names with '/': nested folders, as 2.x created them.
    ds = storage.open_dataset("team/proj", "data", "w", version="v1")
    ds.write({"nested": True})
    ds.close()
    print("nested:", drain(storage.open_dataset("team/proj", "data", "r")))

    # Errors 2.x code catches.
    try:
        storage.open_dataset("corpus", "missing", "r")
    except ValueError:
        print("missing dataset: ValueError")
    try:
        storage.open_dataset("corpus", "train", "r", version="9")
    except ValueError:
        print("missing version: ValueError")

    # Directories: a checkpoint saved as "best" every epoch, then loaded.
    ckpt = os.path.join(workdir, "ckpt")
    os.makedirs(ckpt)
    for epoch in range(3):
        with open(os.path.join(ckpt, "weights.txt"), "w") as fh:
            fh.write(f"epoch {epoch}\n")
        print("saved:", storage.save_directory("models/bert", "base", ckpt, version="best", progress_bar=False))
    print("saved:", storage.save_directory("models/bert", "base", ckpt, progress_bar=False))
    restored = os.path.join(workdir, "restored")
    print("loaded:", storage.load_directory("models/bert", "base", restored, version="best", progress_bar=False))
    with open(os.path.join(restored, "weights.txt")) as fh:
        print("weights.txt:", fh.read().strip())
    print("object meta:", storage.get_object_meta("models/bert", "base"))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
