"""Accounts (users and organizations), org members, API tokens (stored hashed), authentication,
who may act for whom, and the administration use cases behind /v1/admin/."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from cogplane.domain.entities import Account, ApiToken, Membership, Page, UsageRecord
from cogplane.domain.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from cogplane.domain.ids import hash_token, new_token
from cogplane.domain.timefmt import seconds_between
from cogplane.ports import Clock, StateStore, WouldBlock

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,38}$")
TOKEN_NAME_MAX = 100
ROLES = ("owner", "member")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
UNAUTHENTICATED = "You did not pass a valid authentication token"
TOUCH_EVERY_SECONDS = 60  # last_used_at is refreshed at most once a minute


def _check_username(username: Any) -> str:
    if not isinstance(username, str) or not USERNAME.match(username):
        raise InvalidRequest(
            f"Invalid username {username!r}: use lowercase letters, digits, '-' and '_' (max 39).", field="username"
        )
    return username


class AccountService:
    def __init__(self, state: StateStore, clock: Clock) -> None:
        self.state = state
        self.clock = clock

    # --- accounts -------------------------------------------------------------------------
    def _new_account(self, username: str, type: str, name: str | None, admin: bool) -> Account:
        return Account(
            username=_check_username(username),
            type=type,
            name=name or username,
            created_at=self.clock.now(),
            admin=admin,
            webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        )

    def ensure_account(
        self, username: str, *, type: str = "user", name: str | None = None, admin: bool = False
    ) -> Account:
        """Create the account if it does not exist yet; return it (made an admin if asked)."""
        self.state.create_account(self._new_account(username, type, name, admin))
        stored = self.state.get_account(username)
        if stored is None:
            raise RuntimeError(f"account {username} vanished right after it was created")
        if admin and not stored.admin:
            stored = stored.replace(admin=True)
            self.state.update_account(stored)
        return stored

    def create_account(self, username: str, *, type: str = "user", name: str | None = None) -> Account:
        """A new account; Conflict if the name is taken (by a user or an org)."""
        account = self._new_account(username, type, name, False)
        if not self.state.create_account(account):
            raise Conflict(f"The name {username!r} is already taken.")
        return account

    def get(self, username: str) -> Account:
        account = self.state.get_account(username)
        if account is None:
            raise NotFound(f"Account {username} not found.")
        return account

    def list_accounts(self, *, cursor: str | None = None, limit: int = 100) -> Page[Account]:
        return self.state.list_accounts(cursor=cursor, limit=limit)

    # --- tokens ---------------------------------------------------------------------------
    def create_token(self, account: str, *, name: str | None = None, token: str | None = None) -> tuple[str, ApiToken]:
        """A new token of the account: (the token, shown this once; its record). Only its hash
        is stored. With `token` given, that value is registered (idempotent: the same value
        gives back the existing record)."""
        self.get(account)
        name = (name or "default").strip()
        if not name or len(name) > TOKEN_NAME_MAX:
            raise InvalidRequest(f"A token name must be 1 to {TOKEN_NAME_MAX} characters.", field="name")
        secret = token or new_token()
        if len(secret) < 16:
            raise InvalidRequest("A token must be at least 16 characters long.")
        record = ApiToken(
            id="tok_" + secrets.token_hex(10),
            account=account,
            name=name,
            token_hash=hash_token(secret),
            created_at=self.clock.now(),
        )
        if not self.state.put_token(record):
            existing = self.state.get_token(record.token_hash)
            if existing is None or existing.account != account:  # never move a token to another account
                raise Conflict(
                    f"This token already belongs to another account; it was not issued to "
                    f"{account!r}. Use another token."
                )
            record = existing
        return secret, record

    def issue_token(self, username: str, token: str | None = None) -> str:
        """Store a token (given, or new) for the account; only its hash is kept."""
        return self.create_token(username, token=token)[0]

    def list_tokens(self, account: str) -> list[ApiToken]:
        self.get(account)
        return self.state.list_tokens(account)

    def revoke_token(self, token_id: str) -> ApiToken:
        """Revoked tokens are deleted: the next request with one gets 401 (nothing caches them)."""
        removed = self.state.delete_token(token_id)
        if removed is None:
            raise NotFound(f"Token {token_id} not found.")
        return removed

    def authenticate(self, authorization: str | None) -> Account:
        """`Bearer <token>` or the legacy `Token <token>`; anything else is 401."""
        if not authorization:
            raise Unauthenticated(UNAUTHENTICATED)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "token") or not token:
            raise Unauthenticated(UNAUTHENTICATED)
        record = self.state.get_token(hash_token(token))
        account = self.state.get_account(record.account) if record else None
        if record is None or account is None:
            raise Unauthenticated(UNAUTHENTICATED)
        now = self.clock.now()
        if record.last_used_at is None or seconds_between(record.last_used_at, now) >= TOUCH_EVERY_SECONDS:
            try:
                self.state.touch_token(record.token_hash, now)
            except WouldBlock:  # the API's event loop does not wait for the write lock: a later request touches it
                pass
        return account

    # --- organizations ----------------------------------------------------------------------
    def create_org(self, name: str, *, owner: str, display_name: str | None = None) -> Account:
        user = self.get(owner)
        if user.type != "user":
            raise InvalidRequest(f"{owner} is an organization; an org's owner must be a user.", field="owner")
        org = self.create_account(name, type="organization", name=display_name)
        self.state.put_member(Membership(org=name, username=owner, role="owner", created_at=self.clock.now()))
        return org

    def _org(self, org: str) -> Account:
        account = self.get(org)
        if account.type != "organization":
            raise InvalidRequest(f"{org} is a user, not an organization.", field="org")
        return account

    def add_member(self, org: str, username: str, *, role: str = "member") -> Membership:
        self._org(org)
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}.", field="role")
        if self.get(username).type != "user":
            raise InvalidRequest(f"{username} is an organization; only users can be members.", field="username")
        existing = self.state.get_member(org, username)
        if existing is not None and existing.role == "owner" and role != "owner":
            self._keep_an_owner(org, username)
        membership = Membership(
            org=org, username=username, role=role, created_at=existing.created_at if existing else self.clock.now()
        )
        self.state.put_member(membership)
        return membership

    def _keep_an_owner(self, org: str, leaving: str) -> None:
        if not [m for m in self.state.list_members(org) if m.role == "owner" and m.username != leaving]:
            raise Conflict(f"{leaving} is the last owner of {org}; add another owner first.")

    def remove_member(self, org: str, username: str) -> None:
        """Takes effect at once: access is checked against the stored membership on every request."""
        self._org(org)
        existing = self.state.get_member(org, username)
        if existing is None:
            raise NotFound(f"{username} is not a member of {org}.")
        if existing.role == "owner":
            self._keep_an_owner(org, username)
        self.state.delete_member(org, username)

    def list_members(self, org: str) -> list[Membership]:
        self._org(org)
        return self.state.list_members(org)

    def memberships(self, username: str) -> list[Membership]:
        return self.state.list_memberships(username)

    # --- who may act for whom ---------------------------------------------------------------
    def can_act_for(self, viewer: Account | None, owner: str) -> bool:
        """The viewer is the owner, or a user who is a member of the owner org. Read from the
        store on every call (the owner's own requests cost nothing), so removing a member
        removes their access at once."""
        if viewer is None:
            return False
        if viewer.username == owner:
            return True
        return viewer.type == "user" and self.state.get_member(owner, viewer.username) is not None

    def can_manage(self, viewer: Account | None, account: str) -> bool:
        """Tokens and members of `account`: the account itself, or an owner of the org."""
        if viewer is None:
            return False
        if viewer.username == account:
            return True
        member = self.state.get_member(account, viewer.username) if viewer.type == "user" else None
        return member is not None and member.role == "owner"

    # --- usage ----------------------------------------------------------------------------
    def usage(self, account: str, *, since: str | None = None, until: str | None = None) -> list[UsageRecord]:
        self.get(account)
        today = self.clock.now()[:10]
        since = since or "0000-01-01"
        until = until or today
        for label, value in (("since", since), ("until", until)):
            if not DAY.match(value[:10]):
                raise InvalidRequest(f"`{label}` must be a date (YYYY-MM-DD).", field=label)
        return self.state.list_usage(account, since=since[:10], until=until[:10])
