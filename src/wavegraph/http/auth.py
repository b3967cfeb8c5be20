"""API keys → tenants, development keys, and the optional ``/metrics`` key.

A request names its key in ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (both may be sent
if they agree). No key, an unknown key or two different keys → 401 with ``WWW-Authenticate: Bearer``.
Keys are compared in constant time against every configured key.

**Development keys.** A key whose name starts with ``dev-key-`` (:data:`DEV_KEY_PREFIX`; the defaults
``dev-key-acme`` and ``dev-key-globex`` are such keys) is a development key: it is published in the
repository, so it only works when ``http.allow_dev_keys`` is true (``WAVEGRAPH_HTTP__ALLOW_DEV_KEYS=true``;
the test suite and the Makefile set it). With the flag off:

- if every configured key is a development key, the app refuses to start (:class:`ConfigError`, one
  sentence naming the flag), since it could authenticate nobody;
- otherwise the development keys are dropped (a warning is logged at start) and a request offering
  any ``dev-key-…`` key gets 401 ``{"error": "dev_key_refused"}`` whose detail names the flag. The
  answer depends on the prefix only, so it says nothing about which keys are configured.

Real (non-development) keys always work.

An authenticated request may only write its own tenant's events: an event whose ``tenant`` differs
from the key's tenant makes the whole batch **403** (``error = "forbidden_tenant"``, naming the lines),
because the request is well-formed but not allowed (422 is kept for events that fail validation).

``/metrics`` takes its own key (``http.metrics_key``), read from the same two headers by
:func:`require_key`; API keys do not open it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from starlette.datastructures import Headers

from wavegraph.errors import ConfigError
from wavegraph.http.errors import ApiError

log = logging.getLogger(__name__)

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="wavegraph"'}
DEV_KEY_PREFIX = "dev-key-"
DEV_KEY_FLAG = "http.allow_dev_keys (WAVEGRAPH_HTTP__ALLOW_DEV_KEYS=true)"


def is_dev_key(key: str) -> bool:
    """Whether ``key`` is a development key (its name starts with :data:`DEV_KEY_PREFIX`)."""
    return key.startswith(DEV_KEY_PREFIX)


class Authenticator:
    """Maps the key of a request to its tenant (``settings.http.api_keys``: ``{key: tenant}``).

    With ``allow_dev_keys`` false, development keys are refused (see the module docstring); raises
    :class:`ConfigError` when that leaves no key while some were configured.
    """

    def __init__(self, api_keys: Mapping[str, str], *, allow_dev_keys: bool = False) -> None:
        self.allow_dev_keys = allow_dev_keys
        usable = {k: t for k, t in api_keys.items() if allow_dev_keys or not is_dev_key(k)}
        if api_keys and not usable:
            raise ConfigError(
                f"http.api_keys holds only development keys ({DEV_KEY_PREFIX}*), which are refused "
                f"unless {DEV_KEY_FLAG} is set: configure a real API key or set the flag"
            )
        if len(usable) < len(api_keys):
            log.warning(
                "ignoring %d development API key(s) (%s*): set %s to accept them",
                len(api_keys) - len(usable),
                DEV_KEY_PREFIX,
                DEV_KEY_FLAG,
            )
        self._keys = [(key.encode(), tenant) for key, tenant in usable.items()]

    def tenant_for(self, headers: Headers) -> str:
        """The tenant owning the request's key; raise a 401 :class:`ApiError` otherwise."""
        key = offered_key(headers)
        if not self.allow_dev_keys and is_dev_key(key):
            raise ApiError(
                401,
                "dev_key_refused",
                f"development API keys ({DEV_KEY_PREFIX}*) are refused unless {DEV_KEY_FLAG} is set",
                CHALLENGE,
            )
        tenant = self._lookup(key)
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


def offered_key(headers: Headers, what: str = "API key") -> str:
    """The one key a request offers (``Authorization: Bearer`` and/or ``X-API-Key``); 401 otherwise.

    ``what`` names the key in the 401's detail (``"API key"``, ``"metrics key"``).
    """
    offered = set()
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized(f"Authorization must be 'Bearer <{what}>'")
        offered.add(token.strip())
    api_key = headers.get("x-api-key")
    if api_key is not None and api_key.strip():
        offered.add(api_key.strip())
    if not offered:
        raise _unauthorized(f"missing {what}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if len(offered) > 1:
        raise _unauthorized("Authorization and X-API-Key name different keys")
    return offered.pop()


def require_key(headers: Headers, expected: str, what: str) -> None:
    """Return if the request offers exactly ``expected`` (constant time); else a 401 naming ``what``."""
    if not hmac.compare_digest(offered_key(headers, what).encode(), expected.strip().encode()):
        raise _unauthorized(f"wrong {what}")


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, CHALLENGE)
