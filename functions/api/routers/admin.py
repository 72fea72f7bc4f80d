"""Administration under /v1/admin/: users, organizations and their members, tokens, usage.
Only admin accounts see these routes; to anyone else they answer 404, as if they did not exist.
`cogplane admin ...` is a thin client of these routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from cogplane.domain.entities import Account, ApiToken, Membership, UsageRecord
from cogplane.domain.errors import NotFound
from functions.api.deps import AccountDep, ApiRoute, JsonBody, ServicesDep

if TYPE_CHECKING:
    from cogplane.domain.entities import Account, ApiToken

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=ApiRoute)


def admin_account(account: AccountDep) -> Account:
    if not account.admin:
        raise NotFound("The requested resource could not be found.")
    return account


AdminDep = Annotated[Account, Depends(admin_account)]


def account_view(account: Account, memberships: list[Membership] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "username": account.username,
        "type": account.type,
        "name": account.name or account.username,
        "admin": account.admin,
        "created_at": account.created_at,
    }
    if memberships is not None:
        view["orgs"] = [{"org": m.org, "role": m.role} for m in memberships]
    return view


def token_view(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "account": token.account,
        "name": token.name,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
    }


def member_view(m: Membership) -> dict[str, Any]:
    return {"org": m.org, "username": m.username, "role": m.role, "created_at": m.created_at}


def usage_view(account: str, rows: list[UsageRecord], prices: dict[str, float]) -> dict[str, Any]:
    out = []
    for row in rows:
        item = {
            "day": row.day,
            "hardware": row.hardware,
            "predict_time": round(row.predict_time, 6),
            "predictions": row.predictions,
        }
        if row.hardware in prices:
            item["cost"] = round(row.predict_time * prices[row.hardware], 6)
        out.append(item)
    total = {
        "predict_time": round(sum(r.predict_time for r in rows), 6),
        "predictions": sum(r.predictions for r in rows),
    }
    if prices and all(r.hardware in prices for r in rows):
        total["cost"] = round(sum(r.predict_time * prices[r.hardware] for r in rows), 6)
    return {"account": account, "results": out, "total": total}


def _str(body: dict[str, Any], key: str) -> str:
    from cogplane.domain.errors import Unprocessable

    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise Unprocessable(f"`{key}` is required (a string).", field=key)
    return value


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    return None if body.get(key) is None else _str(body, key)


@router.post("/users", status_code=201)
async def create_user(services: ServicesDep, admin: AdminDep, body: JsonBody) -> dict[str, Any]:
    """A new user and their first token (shown this once)."""
    username = _str(body, "username")
    name = _optional_str(body, "name")

    def run() -> tuple[Account, str, ApiToken]:
        account = services.accounts.create_account(username, name=name)
        secret, token = services.accounts.create_token(account.username, name="default")
        return account, secret, token

    account, secret, token = await run_in_threadpool(run)
    return {**account_view(account), "token": secret, "token_id": token.id}


@router.get("/users")
async def list_users(services: ServicesDep, admin: AdminDep, cursor: str | None = None) -> dict[str, Any]:
    def run() -> tuple[list[dict[str, Any]], str | None]:
        page = services.accounts.list_accounts(cursor=cursor, limit=services.settings.page_size)
        return [
            account_view(a, services.accounts.memberships(a.username) if a.type == "user" else None) for a in page.items
        ], page.next_cursor

    results, nxt = await run_in_threadpool(run)
    return {"results": results, "next_cursor": nxt}


@router.post("/orgs", status_code=201)
async def create_org(services: ServicesDep, admin: AdminDep, body: JsonBody) -> dict[str, Any]:
    name, owner = _str(body, "name"), _str(body, "owner")
    display = _optional_str(body, "display_name")

    def run() -> dict[str, Any]:
        org = services.accounts.create_org(name, owner=owner, display_name=display)
        return {**account_view(org), "members": [member_view(m) for m in services.accounts.list_members(name)]}

    return await run_in_threadpool(run)


@router.get("/orgs/{org}/members")
async def list_members(org: str, services: ServicesDep, admin: AdminDep) -> dict[str, Any]:
    members = await run_in_threadpool(services.accounts.list_members, org)
    return {"org": org, "results": [member_view(m) for m in members]}


@router.post("/orgs/{org}/members", status_code=201)
async def add_member(org: str, services: ServicesDep, admin: AdminDep, body: JsonBody) -> dict[str, Any]:
    username = _str(body, "username")
    role = _optional_str(body, "role") or "member"
    membership = await run_in_threadpool(lambda: services.accounts.add_member(org, username, role=role))
    return member_view(membership)


@router.delete("/orgs/{org}/members/{username}")
async def remove_member(org: str, username: str, services: ServicesDep, admin: AdminDep) -> dict[str, Any]:
    await run_in_threadpool(services.accounts.remove_member, org, username)
    return {"org": org, "username": username, "removed": True}


@router.post("/tokens", status_code=201)
async def create_token(services: ServicesDep, admin: AdminDep, body: JsonBody) -> dict[str, Any]:
    """A new token of any account (user or org), shown this once."""
    account = _str(body, "account")
    name = _optional_str(body, "name")
    secret, token = await run_in_threadpool(lambda: services.accounts.create_token(account, name=name))
    return {**token_view(token), "token": secret, "token_id": token.id}


@router.get("/tokens")
async def list_tokens(services: ServicesDep, admin: AdminDep, account: str) -> dict[str, Any]:
    tokens = await run_in_threadpool(services.accounts.list_tokens, account)
    return {"account": account, "results": [token_view(t) for t in tokens]}


@router.delete("/tokens/{token_id}")
async def revoke_token(token_id: str, services: ServicesDep, admin: AdminDep) -> dict[str, Any]:
    token = await run_in_threadpool(services.accounts.revoke_token, token_id)
    return {**token_view(token), "revoked": True}


@router.get("/usage")
async def usage(
    services: ServicesDep, admin: AdminDep, account: str, since: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Billable predict time of one account by day and hardware (since/until: YYYY-MM-DD, inclusive)."""
    rows = await run_in_threadpool(lambda: services.accounts.usage(account, since=since, until=until))
    return usage_view(account, rows, services.settings.hardware_prices)
