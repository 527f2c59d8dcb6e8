"""The pydantic models of store URLs: :class:`StoreURL` and :class:`BackendOptions`.

Reached as ``kara_core.url.StoreURL`` and ``kara_core.url.BackendOptions`` (their
``__module__``); kept apart so that opening a store whose URL and options are plain
(:func:`kara_core.url.open_backend`'s fast path) never imports pydantic, whose import
costs a fresh process about 0.1 s and a full garbage collection.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["SCHEME", "BackendOptions", "StoreURL"]

#: What a scheme may be; kara_core.url's fast path checks the same pattern.
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


class StoreURL(BaseModel):
    """A parsed store URL. ``location`` is everything after ``scheme://``."""

    __module__ = "kara_core.url"
    model_config = ConfigDict(frozen=True)

    raw: str
    scheme: str
    location: str

    @field_validator("scheme")
    @classmethod
    def _scheme_is_valid(cls, value: str) -> str:
        if not SCHEME.fullmatch(value):
            raise ValueError(f"invalid scheme {value!r}")
        return value.lower()

    @field_validator("location")
    @classmethod
    def _location_is_clean(cls, value: str) -> str:
        if any(ch in value for ch in "\x00\r\n"):
            raise ValueError("control characters are not allowed in a store URL")
        return value

    def __str__(self) -> str:
        return f"{self.scheme}://{self.location}"


class BackendOptions(BaseModel):
    """Base of every plugin's options model: unknown options are an error."""

    __module__ = "kara_core.url"
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
