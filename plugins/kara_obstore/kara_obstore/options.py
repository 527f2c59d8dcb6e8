"""Options of obstore stores: obstore's own configuration keys, plus the s3fs and adlfs
spellings of the common ones (so one set of options opens a store through either plugin).

No obstore import at module level: this module is loaded when a store is opened (its
options are validated before obstore is needed).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import ConfigDict

from kara_core.errors import ConfigurationError
from kara_core.url import BackendOptions

__all__ = ["ALIASES", "KIND", "ObstoreOptions", "store_kwargs"]

#: Which store class serves a scheme.
KIND = {"s3": "s3", "az": "azure", "azure": "azure", "abfs": "azure"}
#: s3fs / adlfs option names -> obstore's, per store kind.
ALIASES = {
    "s3": {
        "endpoint_url": "endpoint",
        "key": "access_key_id",
        "secret": "secret_access_key",
        "token": "session_token",
        "region_name": "region",
        "anon": "skip_signature",
    },
    "azure": {"sas_token": "sas_key", "anon": "skip_signature"},
}
#: Options kara reads itself rather than passing them to the store.
CLIENT_KEYS = ("client_options", "retry_config", "credential_provider")


class ObstoreOptions(BackendOptions):
    """Options of a store opened through obstore: any keyword, checked by obstore itself.

    They are obstore's configuration keys (``endpoint``, ``access_key_id``,
    ``secret_access_key``, ``region`` for S3; ``account_name``, ``account_key``,
    ``sas_key``, ``endpoint`` for Azure; ``client_options``, ``retry_config``) and the
    s3fs/adlfs spellings ``endpoint_url``, ``key``, ``secret``, ``token`` and
    ``connection_string``. An unknown name is a :class:`ConfigurationError` naming it.
    """

    model_config = ConfigDict(extra="allow", frozen=True, arbitrary_types_allowed=True)

    def __repr__(self) -> str:
        # Values may be credentials: name the options, never show them.
        return f"ObstoreOptions({', '.join(sorted(self.model_extra or {}))})"

    __str__ = __repr__


def _connection_string(value: str) -> dict[str, Any]:
    """obstore options of an Azure connection string (account, key or SAS, blob endpoint)."""
    parts = dict(item.split("=", 1) for item in value.split(";") if "=" in item)
    names = {"AccountName": "account_name", "AccountKey": "account_key", "SharedAccessSignature": "sas_key"}
    found = {names[k]: v for k, v in parts.items() if k in names}
    if "BlobEndpoint" in parts:
        found["endpoint"] = parts["BlobEndpoint"].rstrip("/")
    if "account_name" not in found:
        raise ConfigurationError("the Azure connection string names no AccountName")
    return found


def store_kwargs(scheme: str, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of obstore's store class for ``options`` (aliases resolved).

    Azure's connection string also comes from ``AZURE_STORAGE_CONNECTION_STRING``. An
    ``http://`` endpoint (given, or S3's ``AWS_ENDPOINT_URL``) turns on
    ``client_options.allow_http`` (obstore refuses plain HTTP otherwise; a test server
    on 127.0.0.1 speaks nothing else).
    """
    kind = KIND[scheme]
    aliases = ALIASES[kind]
    kwargs: dict[str, Any] = {}
    for name, value in options.items():
        if kind == "azure" and name == "connection_string":
            kwargs.update(_connection_string(str(value)))
            continue
        target = aliases.get(name, name)
        if target in kwargs:
            raise ConfigurationError(f"bad options for {scheme}:// store: {name!r} and {target!r} are the same option")
        kwargs[target] = value
    if kind == "azure" and "account_name" not in kwargs and os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        # adlfs's usual variable; obstore reads AZURE_STORAGE_ACCOUNT_NAME / _KEY / _SAS_KEY itself.
        kwargs = {**_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"]), **kwargs}
    endpoint = kwargs.get("endpoint")
    if endpoint is None and kind == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT")
    if isinstance(endpoint, str) and endpoint.startswith("http://"):
        client = dict(kwargs.get("client_options") or {})
        client.setdefault("allow_http", True)
        kwargs["client_options"] = client
    return kwargs
