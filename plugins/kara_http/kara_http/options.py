"""Options of ``http://`` and ``https://`` stores (pydantic only: cheap to import)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from kara_core.url import BackendOptions

__all__ = ["HTTPOptions"]

MiB = 1024 * 1024


class HTTPOptions(BackendOptions):
    """Options of ``http(s)://host[:port]/prefix`` stores.

    - ``headers``: extra request headers sent with every request (kara-storage 2.x's
      ``headers`` option), for example a CDN key.
    - ``username`` / ``password``: HTTP basic auth.
    - ``token``: a bearer token (``Authorization: Bearer ...``); a ``kara serve`` gateway
      needs it for writes. Secrets never appear in ``repr``, logs or error messages.
    - ``connect_timeout`` / ``read_timeout``: seconds, per connection attempt and per
      socket read; an answer must also bring 16 KiB (or its end) per ``read_timeout`` of
      waiting, so a server dripping bytes cannot hold a reader forever.
    - ``retry_budget``: total seconds one operation may spend retrying connection errors,
      timeouts, 429 and 5xx answers (exponential backoff with jitter, ``Retry-After``
      honoured); ``backoff_base`` / ``backoff_max`` shape the delays.
    - ``window_size`` / ``window_cache``: a small read of a block file (``*.blk``, which
      the format only ever appends to) fetches the aligned ``window_size`` bytes around
      it, and the most recent windows are kept, up to ``window_cache`` bytes, so random
      record reads cost one round trip per window instead of one per record
      (``window_cache=0`` turns it off). Sequential readers ask for large ranges
      themselves and bypass it.
    - ``max_connections``: keep-alive connections to the server, at most (parallel
      prefetches, DataLoader threads and the 32 downloads a folder load keeps in flight
      share them; a request finding all busy waits for one, up to ``read_timeout``).
    - ``gateway``: ``None`` (default) asks the server once whether it is a ``kara serve``
      gateway (which makes the store writable); ``False`` treats it as a static mirror
      without asking; ``True`` requires a gateway.
    - ``verify``: TLS certificate verification (``False`` or a CA bundle path).
    - ``allow_insecure_credentials``: a token or username/password is never sent over
      plain ``http://`` to a host that is not loopback (anyone on the path could read
      it) unless this is True; use ``https://`` (``kara serve --tls-cert``) instead.
    """

    headers: dict[str, str] = Field(default_factory=dict)
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    retry_budget: float = Field(default=120.0, ge=0)
    backoff_base: float = Field(default=0.2, gt=0)
    backoff_max: float = Field(default=10.0, gt=0)
    window_size: int = Field(default=256 * 1024, ge=4096)
    window_cache: int = Field(default=64 * MiB, ge=0)
    max_connections: int = Field(default=32, ge=1, le=256)
    gateway: bool | None = None
    verify: bool | str = True
    allow_insecure_credentials: bool = False

    @field_validator("headers")
    @classmethod
    def _headers_are_clean(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if any(ch in str(name) + str(header) for ch in "\r\n\x00"):
                raise ValueError("header names and values must not contain CR, LF or NUL")
        return value

    @model_validator(mode="after")
    def _one_kind_of_auth(self) -> HTTPOptions:
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        if self.token is not None and self.username is not None:
            raise ValueError("use either token (bearer) or username/password (basic), not both")
        return self

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        # Header values often carry credentials (Authorization, CDN keys): show names only.
        for name, value in super().__repr_args__():
            if name == "headers":
                yield name, sorted(self.headers)
            else:
                yield name, value
