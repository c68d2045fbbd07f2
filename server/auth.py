"""Who is asking and what they may do: analysts by session, machines by API key; CSRF, origins.

Roles and scopes both become permissions: `read` (alerts, the dashboard, /ws), `triage`
(acknowledge, resolve), `admin`, `ingest`, `labels` and `backup` (a detector snapshot on
request). Analysts' roles grant the first three; API keys carry the scopes they were created
with. `triage` is never a key's: a decision about an alert belongs to a person.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiohttp import web
from aiohttp_session import get_session, new_session
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server import api_keys, messages
from server.config import Settings
from server.hub import Hub
from server.ratelimit import LoginThrottle
from server.store.base import Role, Store

CSRF_HEADER = "X-CSRF-Token"
Permission = Literal["read", "triage", "admin", "ingest", "labels", "backup"]
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "analyst": frozenset({"read", "triage"}),
    "admin": frozenset({"read", "triage", "admin"}),
}
_hasher = PasswordHasher()
# A real hash to verify against when the user does not exist, so timing does not tell.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str  # an analyst's role, or "machine" for an API key
    via: Literal["session", "api_key"]
    permissions: frozenset[str]
    csrf: str | None = None
    session: str | None = None  # sessions: the hash of the server-side session id
    expires_at: float | None = None  # sessions: Unix time the login ends
    key_hash: str | None = None  # keys from `fraudwatch keys`; None for the bootstrap key

    @property
    def is_machine(self) -> bool:
        return self.via == "api_key"

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_user_name(name: str) -> None:
    """Raises ValueError unless `name` can be a user's."""
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError("user name must be 1-64 letters, digits, '-' or '_'")


def check_password(password: str) -> None:
    """Raises ValueError unless `password` is long enough."""
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")


async def create_user(store: Store, name: str, password: str, role: Role) -> None:
    check_user_name(name)
    check_password(password)
    # Argon2 is deliberately slow: keep it off the event loop.
    digest = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
    await store.add_user(name, digest, role)


async def authenticate(store: Store, name: str, password: str) -> Role | None:
    user = await store.get_user(name)
    digest = user.password_hash if user else _DUMMY_HASH

    def verify() -> bool:
        try:
            return _hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False

    ok = await asyncio.get_running_loop().run_in_executor(None, verify)
    return user.role if ok and user is not None else None


def _digest(session_id: str) -> str:
    # The store keeps only this: its rows cannot be turned back into live cookies.
    return hashlib.sha256(session_id.encode()).hexdigest()


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Authenticator:
    """Sessions, API keys, login throttling and origin checks for one application."""

    def __init__(self, settings: Settings, store: Store, hub: Hub) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.keys = api_keys.KeyRing(store, settings.api_key, settings.api_key_cache_ttl)
        self.throttle = LoginThrottle(
            settings.login_max_failures, settings.login_max_failures_per_ip, settings.login_window
        )
        self._origins = settings.origins

    async def principal(self, request: web.Request) -> Principal | None:
        """The caller, from a Bearer API key or the session cookie; None if neither is valid."""
        token = _bearer(request)
        if token is not None:
            grant = await self.keys.lookup(token)
            if grant is None:
                return None
            return Principal(
                grant.name, "machine", "api_key", grant.scopes, key_hash=grant.key_hash
            )
        session = await get_session(request)
        name, session_id = session.get("user"), session.get("sid")
        if not isinstance(name, str) or not isinstance(session_id, str):
            if name is not None:
                session.invalidate()  # a cookie from before server-side sessions
            return None
        digest = _digest(session_id)
        record = await self.store.get_session(digest)
        if (
            record is None
            or record.revoked
            or record.user != name
            or record.expires_at <= time.time()
        ):
            session.invalidate()
            return None
        return Principal(
            name,
            record.role,
            "session",
            ROLE_PERMISSIONS.get(record.role, frozenset()),
            csrf=session.get("csrf"),
            session=digest,
            expires_at=float(record.expires_at),
        )

    async def log_in(self, request: web.Request, name: str) -> None:
        previous = await get_session(request)
        if isinstance(old := previous.get("sid"), str):
            await self._end_session(_digest(old), b"logged in again")
        session = await new_session(request)
        session_id = secrets.token_urlsafe(32)
        issued = int(time.time())
        await self.store.add_session(
            _digest(session_id), name, issued + self.settings.session_max_age
        )
        session["user"] = name
        session["sid"] = session_id
        session["csrf"] = secrets.token_urlsafe(32)
        session["issued"] = issued

    async def log_out(self, request: web.Request, who: Principal) -> None:
        if who.session is not None:
            await self._end_session(who.session, b"logged out")
        (await get_session(request)).invalidate()

    async def _end_session(self, digest: str, reason: bytes) -> None:
        # Revoked in the store first, so a copy of the cookie is dead before anything else.
        await self.store.revoke_session(digest)
        self.hub.close_session(digest, messages.CLOSE_UNAUTHORIZED, reason)

    def origin_allowed(self, request: web.Request) -> bool:
        """Same origin, or one of `allowed_origins`. Browsers send Origin on every WebSocket
        handshake and form POST; a request without one is not from a browser page, so no
        ambient cookie rides on it."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        return origin == f"{request.scheme}://{request.host}".lower() or origin in self._origins


def csrf_ok(request: web.Request, who: Principal, form_token: str | None = None) -> bool:
    """Browser sessions must echo their token on state changes; API keys are not ambient
    credentials, so they need none."""
    if who.is_machine:
        return True
    sent = form_token if form_token is not None else request.headers.get(CSRF_HEADER)
    return bool(sent and who.csrf and hmac.compare_digest(sent, who.csrf))


def load_or_create_secret(path: Path, nbytes: int) -> bytes:
    """A secret kept in the data dir (0600) so sessions and keys survive restarts."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = os.urandom(nbytes)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        return secret


def load_or_create_api_key(data_dir: Path) -> str:
    """The bootstrap key (all scopes) when the `api_key` setting is unset."""
    path = data_dir / "api-key"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = api_keys.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key + "\n")
        return key
