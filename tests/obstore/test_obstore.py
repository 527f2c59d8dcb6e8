"""kara-obstore on S3 (moto's server) and Azure Blob (Azurite): which plugin opens a URL and how
to choose, options and credentials, errors, conditional creates, and directory round trips."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from kara_fsspec import FsspecBackend, open_fsspec
from kara_fsspec.testing import AzuriteServer, S3TestServer
from kara_obstore import ObstoreBackend, open_obstore

from kara_core import KaraStorage
from kara_core.errors import (
    BackendError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
)
from kara_core.plugins import get_backend_spec, list_plugins
from kara_core.url import open_backend

from .conftest import azure_options

# -- which plugin opens s3:// and az:// ----------------------------------------------


def test_registered_schemes_win_over_the_fsspec_fallback(s3_server: S3TestServer, s3_bucket: str) -> None:
    for scheme in ("s3", "az", "azure", "abfs"):
        assert get_backend_spec(scheme).plugin == "obstore"
    assert get_backend_spec("gs").plugin == "fsspec"  # not claimed: no emulator obstore reaches
    backend = open_backend(s3_server.url(s3_bucket, "a/b"), **s3_server.options)
    assert isinstance(backend, ObstoreBackend)
    assert backend.url == f"s3://{s3_bucket}/a/b"
    caps = backend.capabilities
    assert caps.parallel_reads and caps.streamed_reads and caps.atomic_create and not caps.native_appends
    plugin = next(p for p in list_plugins() if p.distribution == "kara-obstore")
    assert plugin.backends == ["s3", "az", "azure", "abfs"]


def test_kara_plugin_variable_picks_the_plugin_of_a_scheme(
    s3_server: S3TestServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_server.url(s3_bucket, "chosen")
    monkeypatch.setenv("KARA_PLUGIN_S3", "fsspec")
    store = KaraStorage(url, **s3_server.options)
    assert isinstance(store.backend, FsspecBackend)
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write({"via": "fsspec"})
    # A pickled store (a DataLoader worker's) reopens through the same choice.
    assert isinstance(pickle.loads(pickle.dumps(store)).backend, FsspecBackend)
    monkeypatch.setenv("KARA_PLUGIN_S3", "obstore")
    store = KaraStorage(url, **s3_server.options)
    assert isinstance(store.backend, ObstoreBackend)
    with store.open_dataset("ns", "k") as ds:
        assert list(ds) == [{"via": "fsspec"}]  # the same layout, written by the other plugin
    monkeypatch.setenv("KARA_PLUGIN_S3", "nosuchplugin")
    with pytest.raises(ConfigurationError, match=r"KARA_PLUGIN_S3='nosuchplugin'.*plugins that do: fsspec, obstore"):
        KaraStorage(url, **s3_server.options)


def test_open_obstore_and_open_fsspec_choose_explicitly_and_pickle_so(
    s3_server: S3TestServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_server.url(s3_bucket, "explicit")
    monkeypatch.setenv("KARA_PLUGIN_S3", "fsspec")
    through_obstore = KaraStorage(open_obstore(url, **s3_server.options))
    monkeypatch.delenv("KARA_PLUGIN_S3")
    through_fsspec = KaraStorage(open_fsspec(url, **s3_server.options))
    assert isinstance(through_obstore.backend, ObstoreBackend)
    assert isinstance(through_fsspec.backend, FsspecBackend)
    assert isinstance(pickle.loads(pickle.dumps(through_fsspec)).backend, FsspecBackend)
    monkeypatch.setenv("KARA_PLUGIN_S3", "fsspec")
    assert isinstance(pickle.loads(pickle.dumps(through_obstore)).backend, ObstoreBackend)
    with pytest.raises(ConfigurationError, match="kara-obstore opens"):
        open_obstore("gs://bucket/prefix")


def test_the_entry_point_does_not_import_obstore() -> None:
    code = (
        "import sys\n"
        "from kara_core.plugins import get_backend_spec\n"
        "assert get_backend_spec('s3').plugin == 'obstore'\n"
        "import kara_obstore, kara_obstore.plugin\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'obstore' or m == 'kara_obstore.backend'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- options and credentials ----------------------------------------------------------


def test_s3fs_and_obstore_option_names_both_work(s3_server: S3TestServer, s3_bucket: str) -> None:
    own = {"endpoint": s3_server.endpoint_url, "access_key_id": "k", "secret_access_key": "s" * 12}
    for options in (s3_server.options, own):
        backend = open_backend(s3_server.url(s3_bucket, "opts"), **options)
        backend.put("x", b"1")
        assert backend.read("x") == b"1"


def test_unknown_options_are_refused_without_echoing_values(s3_server: S3TestServer, s3_bucket: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_backend(s3_server.url(s3_bucket), endpoint_url=s3_server.endpoint_url, secrett="never-shown-secret-1")
    assert "secrett" in str(info.value) and "never-shown-secret-1" not in str(info.value)
    with pytest.raises(ConfigurationError, match="same option"):
        open_backend(s3_server.url(s3_bucket), endpoint_url="http://a", endpoint="http://b")
    with pytest.raises(ConfigurationError, match="must name a bucket"):
        open_backend("s3://", **s3_server.options)


def test_credentials_and_endpoint_come_from_the_environment(
    s3_server: S3TestServer,
    s3_bucket: str,
    azurite_server: AzuriteServer,
    azure_container: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-access-key")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    for url in (s3_server.url(s3_bucket, "env"), azurite_server.url(azure_container, "env")):
        store = KaraStorage(url)
        assert isinstance(store.backend, ObstoreBackend)
        with store.open_dataset("ns", "k", "w", version="1") as ds:
            ds.write({"from": "env"})
        with store.open_dataset("ns", "k") as ds:
            assert list(ds) == [{"from": "env"}]


def test_secrets_never_show_in_errors_or_repr(
    azurite_server: AzuriteServer, azure_container: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWJlLXByaW50ZWQ="
    options = {**azure_options(azurite_server), "account_key": key}
    caplog.set_level(logging.DEBUG)
    store = KaraStorage(azurite_server.url(azure_container, "s"), **options)
    with pytest.raises(PermissionDeniedError) as info:
        store.backend.read("anything")
    shown = str(info.value) + repr(store) + repr(store.backend) + caplog.text
    assert key not in shown
    assert "access denied" in str(info.value)


# -- errors -----------------------------------------------------------------------------


def test_a_missing_bucket_or_container_is_a_clear_error(s3_server: S3TestServer, azurite_server: AzuriteServer) -> None:
    for backend in (
        open_backend(s3_server.url("no-such-bucket", "p"), **s3_server.options),
        open_backend(azurite_server.url("no-such-container", "p"), **azure_options(azurite_server)),
    ):
        with pytest.raises(BackendError, match="the bucket or container does not exist"):
            backend.put("x", b"1")
        with pytest.raises(BackendError, match="the bucket or container does not exist"):
            backend.put_if_absent("lock", b"1")
        assert backend.size("x") is None
        with pytest.raises(NotFoundError):
            backend.read("x")


def test_bad_credentials_are_access_denied(azurite_server: AzuriteServer, azure_container: str) -> None:
    options = {**azure_options(azurite_server), "account_key": "YmFkLWtleS1iYWQta2V5LWJhZC1rZXk="}
    backend = open_backend(azurite_server.url(azure_container, "p"), **options)
    for call in (lambda: backend.put("x", b"1"), lambda: backend.read("x"), lambda: list(backend.list(""))):
        with pytest.raises(PermissionDeniedError, match="access denied"):
            call()


def test_reading_what_is_not_there(s3_backend: ObstoreBackend) -> None:
    with pytest.raises(NotFoundError, match="no such object"):
        s3_backend.read("missing")
    with pytest.raises(NotFoundError):
        s3_backend.open_read("missing")
    with pytest.raises(NotFoundError):
        s3_backend.read("missing", 5, 10)
    assert s3_backend.size("missing") is None and list(s3_backend.list("missing")) == []


@pytest.mark.parametrize("where", ["s3", "azure"])
def test_a_second_writer_loses_the_conditional_create(
    where: str, s3_backend: ObstoreBackend, azure_backend: ObstoreBackend
) -> None:
    backend = s3_backend if where == "s3" else azure_backend
    other = pickle.loads(pickle.dumps(backend))  # another client on the same store
    assert backend.put_if_absent("lock", b"first") is True
    assert other.put_if_absent("lock", b"second") is False
    assert other.read("lock") == b"first"
    assert other.put_if_absent("lock", b"first") is True  # a retried create that had landed


# The writer lock and a server that ignores If-None-Match: tests/fsspec/test_s3.py runs
# them through both plugins.


# -- reads and directories -------------------------------------------------------------


def test_a_range_is_one_get_and_a_stream_of_a_large_object_is_one_get(
    s3_server: S3TestServer, s3_backend: ObstoreBackend
) -> None:
    data = os.urandom(20 * 1024 * 1024 + 5)
    s3_backend.put("big", data)
    s3_server.reset_requests()
    assert s3_backend.read("big", 100, 300) == data[100:300]
    with s3_backend.open_range("big", 1000, len(data) + 50) as stream:
        got = b"".join(iter(lambda: stream.read(3 * 1024 * 1024 + 1), b""))
    assert got == data[1000:]
    assert [r for _, r in s3_server.app.gets] == ["bytes=100-299", f"bytes=1000-{len(data) + 49}"]


@pytest.mark.parametrize("where", ["s3", "azure"])
def test_save_and_load_directory_round_trip(
    where: str,
    s3_server: S3TestServer,
    s3_bucket: str,
    azurite_server: AzuriteServer,
    azure_container: str,
    tmp_path: Path,
) -> None:
    if where == "s3":
        store = KaraStorage(s3_server.url(s3_bucket, "dirs"), **s3_server.options)
    else:
        store = KaraStorage(azurite_server.url(azure_container, "dirs"), **azure_options(azurite_server))
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    files = {f"sub/f{i}.bin": os.urandom(1000 * i) for i in range(6)}
    files["big.bin"] = os.urandom(40 * 1024 * 1024 + 3)  # over 32 MiB: concurrent streamed ranges
    for rel, data in files.items():
        (source / rel).write_bytes(data)
    store.save_directory("ns", "ckpt", str(source), progress_bar=False)
    store.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert {rel: (tmp_path / "out" / rel).read_bytes() for rel in files} == files
    # Unchanged: a re-save uploads nothing, a re-load downloads nothing.
    store.save_directory("ns", "ckpt", str(source), progress_bar=False)
    store.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert {rel: (tmp_path / "out" / rel).read_bytes() for rel in files} == files


def test_a_long_put_is_one_multipart_upload_visible_whole(
    s3_server: S3TestServer, s3_backend: ObstoreBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import kara_obstore.backend

    monkeypatch.setattr(kara_obstore.backend, "WHOLE_PUT", 1024 * 1024)
    data = os.urandom(20 * 1024 * 1024 + 3)
    for body in (data, io.BytesIO(data)):
        s3_server.reset_requests()
        s3_backend.put("long", body)
        assert s3_backend.read("long") == data
        methods = [(method, query.split("=")[0]) for method, _, query in s3_server.app.log]
        assert ("POST", "uploads") in methods  # CreateMultipartUpload, then parts, then Complete
        assert sum(1 for method, query in methods if method == "PUT" and query == "partNumber") >= 2
