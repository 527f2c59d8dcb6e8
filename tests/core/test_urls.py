"""Store URLs: parsing, routing to the plugin of the scheme, option validation."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import pytest

from kara_core import KaraStorage
from kara_core.errors import ConfigurationError, UnknownSchemeError
from kara_core.url import OpenedWith, _opened, open_backend, opened_with, parse_store_url


@pytest.mark.parametrize(
    ("url", "scheme", "location"),
    [
        ("file:///data/store", "file", "/data/store"),
        ("file://relative/store", "file", "relative/store"),
        (
            "oss://oss-cn-beijing.aliyuncs.com/bucket/some/prefix",
            "oss",
            "oss-cn-beijing.aliyuncs.com/bucket/some/prefix",
        ),
        ("https://host:8443/prefix", "https", "host:8443/prefix"),
        ("HTTP://Host/prefix", "http", "Host/prefix"),
    ],
)
def test_urls_split_into_scheme_and_location(url: str, scheme: str, location: str) -> None:
    parsed = parse_store_url(url)
    assert (parsed.scheme, parsed.location) == (scheme, location)


@pytest.mark.parametrize("url", ["/data/store", "data/store", "file:/data/store", ""])
def test_a_string_without_scheme_separator_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a store URL"):
        parse_store_url(url)


@pytest.mark.parametrize("url", ["9p://x/y", "fi le://x", "file://a\nb", "s3\n://b/p", "file\n://x"])
def test_malformed_urls_are_configuration_errors(url: str) -> None:
    # A scheme ending in a line break is malformed, not a scheme no plugin provides.
    with pytest.raises(ConfigurationError, match="invalid store URL"):
        parse_store_url(url)
    with pytest.raises(ConfigurationError, match="invalid store URL"):
        KaraStorage(url)


def test_a_non_string_url_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="must be a string"):
        parse_store_url(42)  # type: ignore[arg-type]


def test_unknown_options_name_the_valid_ones(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option 'app_key'.*valid options: direct_io, fsync"):
        KaraStorage(f"file://{tmp_path}", app_key="abc")


def test_option_errors_never_echo_the_value(tmp_path) -> None:
    with pytest.raises(ConfigurationError) as info:
        KaraStorage(f"file://{tmp_path}", fsync="s3cr3t-value-that-must-not-leak")
    assert "s3cr3t" not in str(info.value)
    assert "fsync" in str(info.value)


def test_unknown_scheme_through_the_facade() -> None:
    with pytest.raises(UnknownSchemeError):
        # ftp:// would open through kara-fsspec (fsspec knows it): a scheme nobody knows.
        KaraStorage("nosuchscheme://host/path")


def test_the_facade_pickles_as_the_url_that_reopens_it(tmp_path) -> None:
    storage = KaraStorage(f"file://{tmp_path}/store")
    storage.backend.put("x", b"1")
    clone = pickle.loads(pickle.dumps(storage))
    assert clone.url == storage.url
    assert clone.backend.read("x") == b"1"


def test_a_backend_opened_by_url_pickles_as_its_url_and_options_without_attributes(tmp_path) -> None:
    from kara_file import FileBackend

    backend = open_backend(f"file://{tmp_path}/s", fsync=False)
    backend.put("a", b"1")
    assert opened_with(backend) == OpenedWith(f"file://{tmp_path}/s", {"fsync": False})
    assert not [name for name in vars(backend) if "kara" in name or "reopen" in name]
    # What DataLoader workers get: the multiprocessing pickler, as well as plain pickle.
    for clone in (pickle.loads(pickle.dumps(backend)), pickle.loads(ForkingPickler.dumps(backend))):
        assert clone is not backend and clone.read("a") == b"1"
        assert opened_with(clone) == opened_with(backend)
    by_hand = FileBackend(str(tmp_path / "s"))
    assert opened_with(by_hand) is None
    clone = pickle.loads(pickle.dumps(by_hand))
    assert opened_with(clone) is None and clone.read("a") == b"1"


def test_what_open_backend_remembers_goes_with_the_backend() -> None:
    import gc

    backend = open_backend("file:///tmp/kara-url-forgotten")
    key = id(backend)
    assert opened_with(backend) is not None
    del backend
    gc.collect()
    assert key not in _opened


def test_how_a_backend_was_opened_shows_option_names_never_values(tmp_path) -> None:
    opened = OpenedWith(f"file://{tmp_path}", {"fsync": False, "token": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(opened) and "'token'" in repr(opened)
