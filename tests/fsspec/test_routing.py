"""Which URLs reach kara-fsspec, and the one-line errors when a package is missing."""

from __future__ import annotations

import importlib.util

import pytest
from fsspec.registry import known_implementations
from kara_fsspec import FsspecBackend
from kara_fsspec.options import missing_package

from kara_core.errors import MissingPluginError, UnknownSchemeError
from kara_core.plugins import get_backend_spec, get_plugin_manager, reset_plugins, unregister_plugin
from kara_core.url import open_backend


def _uninstalled_scheme() -> tuple[str, str]:
    """A scheme fsspec knows whose filesystem package is not installed here."""
    for scheme in ("gs", "dropbox", "webdav", "oci", "box", "lakefs"):
        spec = known_implementations.get(scheme)
        if spec and importlib.util.find_spec(spec["class"].split(".")[0]) is None:
            return scheme, spec["err"]
    pytest.fail("every candidate filesystem package is installed: extend the list")


def test_a_known_scheme_with_a_missing_package_says_what_to_pip_install() -> None:
    scheme, registry_message = _uninstalled_scheme()
    with pytest.raises(MissingPluginError) as info:
        open_backend(f"{scheme}://bucket/prefix")
    message = str(info.value)
    assert "\n" not in message
    assert f"pip install {missing_package(scheme, registry_message, '')}" in message


@pytest.mark.parametrize(
    ("message", "package"),
    [
        ("Install s3fs to access S3", "s3fs"),
        ("Please install gcsfs to access Google Storage", "gcsfs"),
        ('SFTPFileSystem requires "paramiko" to be installed', "paramiko"),
        ('HTTPFileSystem requires "requests" and "aiohttp" to be installed', "requests aiohttp"),
        ("", "somefs"),
    ],
)
def test_the_package_to_install_is_read_off_fsspecs_registry(message: str, package: str) -> None:
    assert missing_package("x", message, "somefs.core.SomeFileSystem") == package


def test_schemes_other_plugins_own_never_reach_fsspec(tmp_path) -> None:
    assert get_backend_spec("file").plugin == "file"
    assert get_backend_spec("oss").plugin == "oss"
    assert get_backend_spec("s3").plugin == "fsspec"
    assert type(open_backend(f"local://{tmp_path}/s")) is FsspecBackend


def test_a_scheme_fsspec_does_not_know_stays_unknown() -> None:
    with pytest.raises(UnknownSchemeError):
        open_backend("nosuchscheme://x/y")


def test_without_kara_fsspec_s3_urls_name_the_distribution_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KARA_PLUGIN_S3")
    unregister_plugin("fsspec")
    # kara-obstore, where installed, registers s3:// by name: without it too.
    if get_plugin_manager().has_plugin("obstore"):
        unregister_plugin("obstore")
    try:
        with pytest.raises(MissingPluginError, match=r"pip install 'kara-fsspec\[s3\]'"):
            open_backend("s3://bucket/prefix")
    finally:
        reset_plugins()
