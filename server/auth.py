"""Who is asking: analysts by session cookie, machines by API key; passwords and CSRF."""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp_session import get_session, new_session
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server.store.base import Role, Store

CSRF_HEADER = "X-CSRF-Token"
_hasher = PasswordHasher()
# A real hash to verify against when the user does not exist, so timing does not tell.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role | str  # analysts' roles, or "machine" for an API key
    via: str  # "session" or "api_key"
    csrf: str | None = None

    @property
    def is_machine(self) -> bool:
        return self.via == "api_key"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def create_user(store: Store, name: str, password: str, role: Role) -> None:
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError("user name must be 1-64 letters, digits, '-' or '_'")
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
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


async def log_in(request: web.Request, name: str, role: Role) -> None:
    session = await new_session(request)
    session["user"] = name
    session["role"] = role
    session["csrf"] = secrets.token_urlsafe(32)
    session["issued"] = int(time.time())


async def log_out(request: web.Request) -> None:
    session = await get_session(request)
    session.invalidate()


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def principal(request: web.Request, api_key: str | None, max_age: int) -> Principal | None:
    """The caller, from a Bearer API key or the session cookie; None if neither is valid."""
    token = _bearer(request)
    if token is not None:
        if api_key and hmac.compare_digest(token.encode(), api_key.encode()):
            return Principal("api", "machine", "api_key")
        return None
    session = await get_session(request)
    name = session.get("user")
    if not name:
        return None
    if int(time.time()) - int(session.get("issued", 0)) > max_age:
        session.invalidate()
        return None
    return Principal(name, session.get("role", "viewer"), "session", session.get("csrf"))


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
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = os.urandom(nbytes)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        return secret


def load_or_create_api_key(data_dir: Path) -> str:
    path = data_dir / "api-key"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        key = "fw_" + secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key + "\n")
        return key
