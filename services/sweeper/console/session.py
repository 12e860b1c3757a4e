"""Console sessions and CSRF: a signed, expiring cookie and a token per form.

The cookie (``remitflow_console``) is ``base64(json) . base64(HMAC-SHA256)``; the
key is derived from ``REMITFLOW_API_TOKEN`` (HMAC of the token with a fixed label),
so every replica that shares the token accepts the same sessions, rotating the
token signs everyone out, and the token itself is never in the cookie. It is
``HttpOnly`` and ``SameSite=Strict`` (``Secure`` behind HTTPS), and carries its
expiry both as ``Max-Age`` and inside the signed payload (a replayed old cookie
is refused).

Every visitor has a session, signed in or not, so the sign-in form carries a
CSRF token too. The CSRF token is an HMAC of the session id: a forged form from
another origin cannot know it, and signing in issues a new session id
(no session fixation). With the API's auth disabled (no token), every session
counts as signed in, the key is random per process, and the pages say so.

Sign-out ends a session on the server, not only in the browser: a signed-in
session is valid only while its id is in the :class:`SessionStore` (an item in the
leases table, shared by every replica), which signing in adds and signing out
removes. A copied cookie dies with the sign-out. Rotating the token ends every
session at once: the signing key is derived from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from shared.aws.names import LEASE_TTL, lease_item_key
from shared.operations.operate import Actor

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

COOKIE = "remitflow_console"
SESSION_TTL_S = 8 * 3600
_LABEL = b"remitflow console session v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    sid: str
    expires_at: int
    signed_in: bool

    @property
    def actor(self) -> Actor:
        """Who acted, for job history and logs: the session, never the token."""
        return Actor(f"console session {self.sid[:8]}")


class SessionStore:
    """Signed-in sessions that are still open: items of the group ``console-session`` in
    the leases table, each with its expiry (``expires_at``, also as ``ttl``, by which
    DynamoDB deletes it)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    @staticmethod
    def _key(sid: str) -> dict[str, Any]:
        return lease_item_key("console-session", sid)

    async def add(self, session: Session) -> None:
        expires = {"N": str(session.expires_at)}
        await self.dynamodb.put_item(TableName=self.table, Item={
            **self._key(session.sid), "expires_at": expires, LEASE_TTL: expires})

    async def open(self, session: Session) -> bool:
        found = (await self.dynamodb.get_item(TableName=self.table, Key=self._key(session.sid),
                                              ConsistentRead=True)).get("Item")
        return found is not None and int(found["expires_at"]["N"]) > time.time()

    async def end(self, session: Session) -> None:
        await self.dynamodb.delete_item(TableName=self.table, Key=self._key(session.sid))


class Sessions:
    """Issues, reads and checks sessions for one token (``None``: auth disabled)."""

    def __init__(self, token: str | None, *, ttl_s: int = SESSION_TTL_S,
                 store: SessionStore | None = None) -> None:
        self.store = store
        self.auth = bool(token)
        self._token = (token or "").encode()
        self._key = (hmac.new(self._token, _LABEL, hashlib.sha256).digest() if token
                     else os.urandom(32))
        self.ttl_s = ttl_s

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def new(self, *, signed_in: bool) -> Session:
        return Session(secrets.token_hex(16), int(time.time()) + self.ttl_s,
                       signed_in or not self.auth)

    def encode(self, session: Session) -> str:
        payload = json.dumps({"sid": session.sid, "exp": session.expires_at,
                              "in": session.signed_in}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._sign(payload)}"

    def read(self, request: Request) -> Session | None:
        """The request's session when its signature holds and it has not expired."""
        raw = request.cookies.get(COOKIE, "")
        body, _, signature = raw.partition(".")
        try:
            payload = _unb64(body)
            if not hmac.compare_digest(self._sign(payload).encode(), signature.encode()):
                return None
            data = json.loads(payload)
            session = Session(str(data["sid"]), int(data["exp"]), bool(data["in"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= time.time():
            return None
        return Session(session.sid, session.expires_at, session.signed_in or not self.auth)

    async def current(self, request: Request) -> Session | None:
        """:meth:`read`, and for a signed-in session: still open on the server."""
        session = self.read(request)
        if (session is not None and session.signed_in and self.auth
                and self.store is not None and not await self.store.open(session)):
            return None
        return session

    async def sign_in(self) -> Session:
        """A new signed-in session, opened on the server."""
        session = self.new(signed_in=True)
        if self.store is not None:
            await self.store.add(session)
        return session

    async def sign_out(self, session: Session) -> None:
        if self.store is not None:
            await self.store.end(session)

    def set_cookie(self, response: Response, request: Request, session: Session) -> None:
        secure = (request.url.scheme == "https"
                  or request.headers.get("x-forwarded-proto") == "https")
        response.set_cookie(COOKIE, self.encode(session),
                            max_age=max(1, session.expires_at - int(time.time())),
                            path="/console", httponly=True, samesite="strict", secure=secure)

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")

    def csrf(self, session: Session) -> str:
        return self._sign(b"csrf:" + session.sid.encode())

    def check_csrf(self, session: Session | None, supplied: str | None) -> bool:
        # Bytes, not str: compare_digest refuses a non-ASCII str (a 500, not a 403).
        return (session is not None and bool(supplied)
                and hmac.compare_digest(self.csrf(session).encode(),
                                        (supplied or "").encode("utf-8", "replace")))

    def check_token(self, supplied: str) -> bool:
        return self.auth and hmac.compare_digest(supplied.encode(), self._token)
