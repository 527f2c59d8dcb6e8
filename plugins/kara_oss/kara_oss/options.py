"""Options of ``oss://`` stores and where their credentials come from (no oss2 import)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import Field, SecretStr

from kara_core.errors import ConfigurationError
from kara_core.url import BackendOptions

__all__ = ["Credentials", "OSSOptions", "resolve_credentials"]

MiB = 1024 * 1024

ENV_KEY_ID = "OSS_ACCESS_KEY_ID"
ENV_KEY_SECRET = "OSS_ACCESS_KEY_SECRET"
ENV_SESSION_TOKEN = "OSS_SESSION_TOKEN"


class OSSOptions(BackendOptions):
    """Options of ``oss://ENDPOINT/BUCKET/prefix`` stores.

    Credentials: ``app_key`` and ``app_secret`` (the kara-storage 2.x names), plus
    ``security_token`` for STS credentials; any of them left out is taken from the
    environment (``OSS_ACCESS_KEY_ID``, ``OSS_ACCESS_KEY_SECRET``, ``OSS_SESSION_TOKEN``).
    Secrets are :class:`~pydantic.SecretStr`: they never show in ``repr`` or errors.

    - ``use_ssl``: talk https to the endpoint (default http, as 2.x).
    - ``region``: sign requests with OSS signature V4 for this region (``cn-hangzhou``);
      without it requests are signed with V1, as 2.x did.
    - ``connect_timeout``/``read_timeout``: seconds per connection attempt, and per socket
      read and per 16 KiB of an answer (the transport's slow-server timeout).
    - ``retry_budget``: seconds a call may spend retrying connection errors, timeouts,
      throttling and 5xx answers (exponential backoff with jitter) before it fails.
    - ``multipart_threshold``: objects larger than this are uploaded in parts of
      ``part_size`` bytes, ``parallelism`` at a time (also the number of concurrent
      ranged GETs one large read is split into).
    - ``append_buffer``: bytes an appender collects before sending an AppendObject.
    """

    app_key: str | None = None
    app_secret: SecretStr | None = None
    security_token: SecretStr | None = None
    use_ssl: bool = False
    region: str | None = None
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(60.0, gt=0)
    retry_budget: float = Field(120.0, ge=0)
    multipart_threshold: int = Field(16 * MiB, ge=100 * 1024)
    part_size: int = Field(8 * MiB, ge=100 * 1024, le=5 * 1024 * MiB)
    parallelism: int = Field(8, ge=1, le=64)
    append_buffer: int = Field(4 * MiB, ge=1)


@dataclass(frozen=True)
class Credentials:
    """Resolved credentials. ``repr`` shows the key id only."""

    key_id: str
    secret: SecretStr
    token: SecretStr | None

    def __repr__(self) -> str:
        return f"Credentials(key_id={self.key_id!r}, secret='**********', token={'set' if self.token else None})"


def resolve_credentials(options: OSSOptions) -> Credentials:
    """Return credentials from the options, falling back to the environment.

    Raises :class:`ConfigurationError` naming the option and the variable to set when the
    key id or the secret is missing.
    """
    key_id = options.app_key or os.environ.get(ENV_KEY_ID, "")
    secret = options.app_secret.get_secret_value() if options.app_secret else os.environ.get(ENV_KEY_SECRET, "")
    token = (
        options.security_token.get_secret_value() if options.security_token else os.environ.get(ENV_SESSION_TOKEN, "")
    )
    missing = []
    if not key_id:
        missing.append(f"the access key id (app_key=... or the environment variable {ENV_KEY_ID})")
    if not secret:
        missing.append(f"the access key secret (app_secret=... or the environment variable {ENV_KEY_SECRET})")
    if missing:
        raise ConfigurationError("oss:// store needs " + " and ".join(missing))
    return Credentials(key_id.strip(), SecretStr(secret.strip()), SecretStr(token) if token else None)
