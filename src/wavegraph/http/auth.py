"""API keys → tenants.

A request names its key in ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (both may be sent
if they agree). No key, an unknown key or two different keys → 401 with ``WWW-Authenticate: Bearer``.
Keys are compared in constant time against every configured key.

An authenticated request may only write its own tenant's events: an event whose ``tenant`` differs
from the key's tenant makes the whole batch **403** (``error = "forbidden_tenant"``, naming the lines),
because the request is well-formed but not allowed (422 is kept for events that fail validation).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from starlette.datastructures import Headers

from wavegraph.http.errors import ApiError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="wavegraph"'}


class Authenticator:
    """Maps the key of a request to its tenant (``settings.http.api_keys``: ``{key: tenant}``)."""

    def __init__(self, api_keys: Mapping[str, str]) -> None:
        self._keys = [(key.encode(), tenant) for key, tenant in api_keys.items()]

    def tenant_for(self, headers: Headers) -> str:
        """The tenant owning the request's key; raise a 401 :class:`ApiError` otherwise."""
        offered = set()
        auth = headers.get("authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("Authorization must be 'Bearer <api key>'")
            offered.add(token.strip())
        api_key = headers.get("x-api-key")
        if api_key is not None and api_key.strip():
            offered.add(api_key.strip())
        if not offered:
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        if len(offered) > 1:
            raise _unauthorized("Authorization and X-API-Key name different keys")
        tenant = self._lookup(offered.pop())
        if tenant is None:
            raise _unauthorized("unknown API key")
        return tenant

    def _lookup(self, key: str) -> str | None:
        raw = key.encode()
        found = None
        for known, tenant in self._keys:  # no early exit: the time taken does not depend on the key
            if hmac.compare_digest(raw, known):
                found = tenant
        return found


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, CHALLENGE)
