"""Accounts, API tokens (stored hashed) and authentication."""

from __future__ import annotations

import base64
import re
import secrets

from cogplane.domain.entities import Account
from cogplane.domain.errors import Conflict, InvalidRequest, Unauthenticated
from cogplane.domain.ids import hash_token, new_token
from cogplane.ports import Clock, StateStore

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,38}$")
UNAUTHENTICATED = "You did not pass a valid authentication token"


class AccountService:
    def __init__(self, state: StateStore, clock: Clock):
        self.state = state
        self.clock = clock

    def ensure_account(self, username: str, *, type: str = "user", name: str | None = None) -> Account:
        """Create the account if it does not exist yet; return it."""
        if not USERNAME.match(username):
            raise InvalidRequest(
                f"Invalid username {username!r}: use lowercase letters, digits, '-' and '_' (max 39)."
            )
        account = Account(
            username=username,
            type=type,
            name=name or username,
            created_at=self.clock.now(),
            webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        )
        self.state.create_account(account)
        stored = self.state.get_account(username)
        assert stored is not None
        return stored

    def issue_token(self, username: str, token: str | None = None) -> str:
        """Store a token (given, or new) for the account; only its hash is kept."""
        token = token or new_token()
        if len(token) < 16:
            raise InvalidRequest("A token must be at least 16 characters long.")
        try:
            self.state.put_token(hash_token(token), username, self.clock.now())
        except Conflict as exc:  # never move a token from one account to another
            raise Conflict(f"This token already belongs to another account; it was not issued to "
                           f"{username!r}. Use another token.") from exc
        return token

    def authenticate(self, authorization: str | None) -> Account:
        """`Bearer <token>` or the legacy `Token <token>`; anything else is 401."""
        if not authorization:
            raise Unauthenticated(UNAUTHENTICATED)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "token") or not token:
            raise Unauthenticated(UNAUTHENTICATED)
        username = self.state.get_token_owner(hash_token(token))
        account = self.state.get_account(username) if username else None
        if account is None:
            raise Unauthenticated(UNAUTHENTICATED)
        return account
