"""Loading kara's plugins imports only their wiring: backends and libraries load on first use.

Checked in a fresh interpreter, as ``import kara_core`` is (a module imported by an
earlier test would hide a regression).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

BUNDLED = {"file", "http", "oss", "torch", "memory", "ray", "spark", "fsspec"}

#: What loading every plugin must not import: the libraries and the implementations.
HEAVY = [
    "ctypes",
    "oss2",
    "requests",
    "httpcore",
    "h11",
    "kara_transport.transport",
    "torch",
    "numpy",
    "ray",
    "pyarrow",
    "pyspark",
    "kara_file.backend",
    "kara_core.localdisk._direct",
    "kara_http.backend",
    "kara_oss.backend",
    "kara_torch.dataset",
    "kara_memory.backend",
    "kara_ray.datasink",
    "kara_ray.datasource",
    "kara_spark.source",
    "kara_fsspec.backend",
    "kara_obstore.backend",
    "obstore",
    "fsspec",
    "s3fs",
    "adlfs",
]


def _fresh(code: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_loading_every_plugin_imports_no_backend_and_no_heavy_library() -> None:
    seen = _fresh(
        f"""
        import json, sys
        from kara_core.plugins import list_plugins
        from kara_core.plugins import get_backend_spec

        plugins = {{p.name: p.error for p in list_plugins()}}
        schemes = [get_backend_spec(s).scheme for s in ("file", "http", "https", "oss", "memory")]
        print(json.dumps({{"plugins": plugins, "schemes": schemes,
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    assert BUNDLED <= set(seen["plugins"]), seen["plugins"]
    assert not any(seen["plugins"].values()), seen["plugins"]
    assert seen["schemes"] == ["file", "http", "https", "oss", "memory"]
    assert seen["heavy"] == []


def test_opening_a_store_loads_its_backend_on_first_use(tmp_path) -> None:
    # The same check has teeth: what it looks for does appear once a store is used.
    seen = _fresh(
        f"""
        import json, sys
        from kara_core.url import open_backend

        open_backend("file://{tmp_path}").put("a", b"1")
        print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    assert "kara_file.backend" in seen["heavy"]
    assert "oss2" not in seen["heavy"] and "torch" not in seen["heavy"]


def test_reading_a_json_record_on_file_imports_no_numpy(tmp_path) -> None:
    # numpy costs a fresh process tens of milliseconds: a file:// store loads it only
    # for the work that needs it (arrays, shuffles, checkpoint compares), not to open.
    seen = _fresh(
        f"""
        import json, sys
        import kara_core

        with kara_core.KaraStorage("file://{tmp_path}") as store:
            with store.open_dataset("ns", "key", "w", version="1") as ds:
                ds.write({{"a": 1}})
            before = "numpy" in sys.modules
            with store.open_dataset("ns", "key") as ds:
                record = ds[0]
        print(json.dumps({{"record": record, "numpy": "numpy" in sys.modules, "before": before}}))
        """
    )
    assert seen["record"] == {"a": 1}
    assert seen["numpy"] is False and seen["before"] is False


def test_the_fsspec_fallback_loads_its_backend_only_when_a_store_is_opened(tmp_path) -> None:
    # Resolving a scheme through the '*' fallback asks fsspec's registry (claims=) and no
    # more; the backend and the filesystem's library load when a store is opened.
    seen = _fresh(
        f"""
        import json, sys
        from kara_core.plugins import get_backend_spec
        from kara_core.url import open_backend

        resolved = get_backend_spec("gs").plugin
        after_resolving = [m for m in {HEAVY!r} if m in sys.modules]
        open_backend("local://{tmp_path}/store").put("a", b"1")
        print(json.dumps({{"resolved": resolved, "after_resolving": after_resolving,
                          "after_opening": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    assert seen["resolved"] == "fsspec"
    # fsspec itself (its registry) is what claims= consults; it may bring ctypes along.
    assert "fsspec" in seen["after_resolving"]
    assert not {"kara_fsspec.backend", "s3fs", "adlfs", "gcsfs"} & set(seen["after_resolving"])
    assert "kara_fsspec.backend" in seen["after_opening"] and "s3fs" not in seen["after_opening"]


#: Each bundled scheme's options model (pydantic classes): loaded only for the scheme opened.
OPTIONS_MODULES = [
    "kara_file.options",
    "kara_http.options",
    "kara_oss.options",
    "kara_fsspec.options",
    "kara_memory.options",
]


def test_opening_a_file_store_imports_no_other_schemes_options(tmp_path) -> None:
    # Plugins register their options models by name ("module:Class"): loading the
    # plugins builds no pydantic model, and opening file:// imports only FileOptions.
    seen = _fresh(
        f"""
        import json, sys
        from kara_core.plugins import list_plugins
        from kara_core.url import open_backend

        plugins = {{p.name: p.error for p in list_plugins()}}
        after_loading = [m for m in {OPTIONS_MODULES!r} if m in sys.modules]
        backend = open_backend("file://{tmp_path}")
        backend.put("a", b"1")
        plain = [m for m in {OPTIONS_MODULES!r} if m in sys.modules]
        fsync = open_backend("file://{tmp_path}", fsync=1).options.fsync  # not plain: FileOptions converts it
        after_opening = [m for m in {OPTIONS_MODULES!r} if m in sys.modules]
        print(json.dumps({{"plugins": plugins, "after_loading": after_loading, "plain": plain,
                          "after_opening": after_opening, "fsync": fsync, "direct_io": backend.options.direct_io,
                          "http_errors": "kara_http.errors" in sys.modules}}))
        """
    )
    assert BUNDLED <= set(seen["plugins"]) and not any(seen["plugins"].values()), seen["plugins"]
    assert seen["after_loading"] == []
    # Plain options open the store without any options model (kara_file.plugin's open_plain).
    assert seen["plain"] == []
    assert seen["after_opening"] == ["kara_file.options"]
    assert seen["fsync"] is True and seen["direct_io"] == "auto"
    assert seen["http_errors"] is False


def _write_store(path) -> str:
    # Written in a process of its own, so the reading process starts without anything
    # the writer imported.
    url = f"file://{path}"
    code = f"""
        import json, sys
        import kara_core
        with kara_core.KaraStorage({url!r}).open_dataset("ns", "key", "w", version="1") as ds:
            ds.write_many({{"i": i}} for i in range(10))
        print(json.dumps({{"pydantic": "pydantic" in sys.modules}}))
        """
    assert _fresh(code) == {"pydantic": False}  # the sidecar and meta.json are written without it too
    return url


def test_reading_a_file_store_imports_no_pydantic(tmp_path) -> None:
    # pydantic's import and the full garbage collection it triggers cost a fresh process
    # about 0.15 s: a plain file:// URL, its meta.json and sidecar open without it.
    url = _write_store(tmp_path)
    seen = _fresh(
        f"""
        import json, sys
        import kara_core

        with kara_core.KaraStorage({url!r}) as store:
            with store.open_dataset("ns", "key") as ds:
                records = [ds[0], *list(ds)[-1:]]
            with store.open_dataset("ns", "key", "r", version="1", serialization="json") as ds:
                records.append(ds[9])
        print(json.dumps({{"records": records, "pydantic": [m for m in sys.modules if m.startswith("pydantic")]}}))
        """
    )
    assert seen["records"] == [{"i": 0}, {"i": 9}, {"i": 9}]
    assert seen["pydantic"] == []


def test_a_meta_json_that_is_not_plain_still_reads_through_its_model(tmp_path) -> None:
    # The same check has teeth: an unknown key in meta.json (kept by the model) loads pydantic.
    url = _write_store(tmp_path)
    meta = tmp_path / "row" / "ns" / "key" / "meta.json"
    meta.write_text('{"latest": "1", "versions": ["1"], "api": 2, "note": "kept"}')
    seen = _fresh(
        f"""
        import json, sys
        import kara_core

        with kara_core.KaraStorage({url!r}) as store:
            meta = store.rows.get_meta("ns", "key")
            with store.open_dataset("ns", "key") as ds:
                record = ds[3]
        print(json.dumps({{"meta": meta, "record": record, "pydantic": "pydantic" in sys.modules}}))
        """
    )
    assert seen["meta"] == {"latest": "1", "versions": ["1"], "api": 2, "note": "kept"}
    assert seen["record"] == {"i": 3} and seen["pydantic"] is True


def test_the_plugin_packages_still_export_their_options_models() -> None:
    from kara_file import FileOptions
    from kara_fsspec import FsspecOptions
    from kara_http import HTTPOptions, ListingNotSupportedError, RangeNotSupportedError
    from kara_memory import MemoryOptions
    from kara_oss import OSSOptions

    from kara_core.plugins import get_backend_spec
    from kara_core.url import BackendOptions

    for model in (FileOptions, FsspecOptions, HTTPOptions, MemoryOptions, OSSOptions):
        assert issubclass(model, BackendOptions)
    assert issubclass(ListingNotSupportedError, Exception) and issubclass(RangeNotSupportedError, Exception)
    assert get_backend_spec("file").options_model is FileOptions
    assert get_backend_spec("https").options_model is HTTPOptions
    assert get_backend_spec("oss").options_model is OSSOptions
    assert get_backend_spec("memory").options_model is MemoryOptions


def test_importing_kara_imports_no_pydantic_no_pluggy_and_no_entry_points() -> None:
    # What a fresh process pays for ``import kara_core``: pydantic (the URL, options and
    # meta models), pluggy and importlib.metadata (entry points) load when a store is
    # opened or a plugin looked up, not at import.
    lazy = ["pydantic", "pluggy", "importlib.metadata", "kara_core.plugins", "kara_core.url", "numpy"]
    seen = _fresh(
        f"""
        import json, sys
        import kara_core

        at_import = [m for m in {lazy!r} if m in sys.modules]
        hookimpl = kara_core.hookimpl
        names = [p.name for p in kara_core.list_plugins()]
        print(json.dumps({{"at_import": at_import, "after_lookup": [m for m in {lazy!r} if m in sys.modules],
                          "marker": type(hookimpl).__name__, "file": "file" in names}}))
        """
    )
    assert seen["at_import"] == []
    # Teeth: looking plugins up does load the machinery.
    assert {"pluggy", "importlib.metadata", "kara_core.plugins"} <= set(seen["after_lookup"])
    assert seen["marker"] == "HookimplMarker" and seen["file"] is True
