"""The wire protocol between a kara-http client and a ``kara serve`` gateway.

Reads are plain HTTP, exactly as on a static mirror: ``GET``/``HEAD`` on
``<prefix>/<path>`` with ``Range``. Writes (bearer token required):

- ``PUT <path>``: atomic put; with ``If-None-Match: *`` a put-if-absent (``201`` created,
  ``412`` it already existed).
- ``POST <path>?append=<position>``: append the body at byte ``position``. The gateway
  applies it only if the object has exactly that size; if the object already ends with
  this very body at that position (a retried request whose answer was lost) it answers
  success without appending again; anything else is ``409`` with the current size in
  ``X-Kara-Size``. So a retried append is never applied twice.
- ``DELETE <path>``: delete (absent is not an error).
- ``GET <prefix>/.kara-gateway``: the discovery document (JSON, :class:`GatewayInfo`);
  with ``?list=<path prefix>``: the matching paths, one per line, relative to ``<prefix>``.

``.kara-gateway`` is therefore a reserved name: no store path component may use it.
"""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["DISCOVERY_NAME", "GATEWAY_HEADER", "SIZE_HEADER", "GatewayInfo"]

#: The reserved last path component of the discovery and listing endpoint.
DISCOVERY_NAME = ".kara-gateway"
#: Sent with every gateway response; its value is the protocol version.
GATEWAY_HEADER = "X-Kara-Gateway"
#: The object's size after a write, or its current size on an append conflict.
SIZE_HEADER = "X-Kara-Size"
PROTOCOL_VERSION = 1


class GatewayInfo(BaseModel):
    """The discovery document a gateway serves at ``<prefix>/.kara-gateway``."""

    kara_gateway: int = PROTOCOL_VERSION
    writable: bool = True
    write_token_required: bool = True
    read_token_required: bool = False
    max_body_size: int
