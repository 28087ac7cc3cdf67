"""Tenant API keys (FERRY_AUTH=on).

Every request but `/health*`, `/schema*` and the dashboard's static page
carries `Authorization: Bearer <key>`. Browsers cannot set that header on
WebSocket and EventSource requests: a WebSocket offers the subprotocols
`ferry` and `bearer.<key>` instead (the key stays out of the URL and so out of
access logs), and `/ws` and `/events` also take `?token=<key>` (EventSource
has no other way; Ferry's logs redact it). The admin key (FERRY_ADMIN_KEY)
acts for every tenant and manages keys; a tenant key acts for its tenant
only. Keys are random 256-bit strings; only their SHA-256 is stored, and a
lookup is cached for a few seconds (a revoked key stops working within that).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import ApiKey

CACHE_S = 5.0
TOKEN_PATHS = ("/ws", "/events")
# A WebSocket client offers `ferry` and `bearer.<key>`; the server accepts with `ferry`
# (a browser fails the handshake unless one of its offers is chosen).
WS_SUBPROTOCOL = "ferry"
WS_KEY_PREFIX = "bearer."


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: one tenant, or (tenant_id None) any tenant."""

    tenant_id: str | None
    admin: bool = False

    def may_act_for(self, tenant_id: str) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id

    def check(self, tenant_id: str) -> None:
        if not self.may_act_for(tenant_id):
            raise PermissionDeniedException(
                f"this key acts for tenant {self.tenant_id} only, not {tenant_id}"
            )

    def scope(self, tenant_id: str | None) -> str | None:
        """The tenant a listing is about: a tenant key sees its own tenant only."""
        if tenant_id is not None:
            self.check(tenant_id)
        return self.tenant_id or tenant_id


OPEN = Principal(None)  # FERRY_AUTH=off: the seeds' open behaviour
ADMIN = Principal(None, admin=True)


def new_key() -> str:
    return "fk_" + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    scheme, _, key = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    if connection.scope["type"] == ScopeType.WEBSOCKET:
        for protocol in connection.headers.get("sec-websocket-protocol", "").split(","):
            if (offered := protocol.strip()).startswith(WS_KEY_PREFIX):
                return offered.removeprefix(WS_KEY_PREFIX) or None
    if connection.scope["path"] in TOKEN_PATHS:
        return connection.query_params.get("token") or None
    return None


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, str | None]] = {}

    async def tenant_of(self, engine: AsyncEngine, key: str) -> str | None:
        digest = key_hash(key)
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with engine.connect() as conn:
            tenant: str | None = (
                await conn.execute(
                    select(ApiKey.tenant_id).where(
                        ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
                    )
                )
            ).scalar_one_or_none()
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[digest] = (now + CACHE_S, tenant)
        return tenant

    def forget(self, digest: str) -> None:
        self._entries.pop(digest, None)


# This process's lookups (other processes see a revocation within CACHE_S).
key_cache = KeyCache()


class TenantKeyAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        key = presented_key(connection)
        if key is None:
            raise NotAuthorizedException("an API key is required: Authorization: Bearer <key>")
        admin_key = connection.app.state.settings.ferry_admin_key
        if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
            return AuthenticationResult(user=ADMIN, auth=None)
        tenant = await key_cache.tenant_of(connection.app.state.engine, key)
        if tenant is None:
            raise NotAuthorizedException("invalid or revoked API key")
        return AuthenticationResult(user=Principal(tenant), auth=None)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The request's principal (OPEN when FERRY_AUTH is off)."""
    user = connection.scope.get("user")
    return user if isinstance(user, Principal) else OPEN


def not_a_tenant_key(connection: ASGIConnection[Any, Any, Any, Any], _: Any) -> None:
    """Guard of routes about every tenant (`/metrics`, setting limits): a tenant key
    is refused; the admin key passes, and so does everyone with FERRY_AUTH off."""
    if principal_of(connection).tenant_id is not None:
        raise PermissionDeniedException(f"{connection.scope['path']} needs the admin key")


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: Any) -> None:
    """Guard of the key routes: the admin key, whether FERRY_AUTH is on or off."""
    admin_key = connection.app.state.settings.ferry_admin_key
    if not admin_key:
        raise PermissionDeniedException("key management needs FERRY_ADMIN_KEY to be set")
    key = presented_key(connection)
    if key is None:
        raise NotAuthorizedException("the admin key is required: Authorization: Bearer <key>")
    if not hmac.compare_digest(key.encode(), admin_key.encode()):
        raise PermissionDeniedException("only the admin key manages tenant keys")


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The `principal` dependency of the HTTP routes."""
    return principal_of(request)
