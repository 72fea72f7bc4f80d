"""Web pages for teams: the account switcher (act as yourself or one of your orgs), the tokens
page (create with a name, shown once, revoke), the members page of an org (owners), and usage.

The acting account lives in a plain cookie naming an org; it is honoured only while the signed-in
user is a member (checked on every request), so removing a member ends it at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from cogplane.domain.entities import Account
from cogplane.domain.errors import DomainError, NotFound
from functions.api.web.router import (
    ACTING_COOKIE,
    WebRoute,
    acting_of,
    check_csrf,
    redirect,
    render,
    require_viewer,
    secure,
    services_of,
)

USAGE_DAYS = 30

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.post("/account/switch")
async def switch(request: Request) -> Response:
    form = await check_csrf(request)
    viewer = require_viewer(request)
    chosen = str(form.get("as") or viewer.username)
    target = str(form.get("next") or "/dashboard")
    if not target.startswith("/") or target.startswith("//"):
        target = "/dashboard"
    if chosen != viewer.username and not services_of(request).accounts.can_act_for(viewer, chosen):
        raise NotFound("No such organization.")
    response = redirect(request, target, notice=f"Acting as {chosen}.")
    if chosen == viewer.username:
        response.delete_cookie(ACTING_COOKIE, path="/")
    else:
        response.set_cookie(ACTING_COOKIE, chosen, httponly=True, samesite="lax", secure=secure(request), path="/")
    return response


def _managed(request: Request) -> Account:
    """The acting account, which the viewer must be allowed to manage (itself, or an org they own)."""
    viewer = require_viewer(request)
    acting = acting_of(request) or viewer
    if not services_of(request).accounts.can_manage(viewer, acting.username):
        raise NotFound("Only an organization's owners manage its tokens and members.")
    return acting


# --- tokens ---------------------------------------------------------------------------------


def _tokens_page(
    request: Request, account: Account, *, new: dict | None = None, error: str | None = None, status: int = 200
) -> Response:
    tokens = services_of(request).accounts.list_tokens(account.username)
    return render(request, "tokens.html", status=status, account=account, tokens=tokens, new=new, error=error)


@router.get("/account/tokens")
async def tokens_page(request: Request) -> Response:
    account = _managed(request)
    return await run_in_threadpool(_tokens_page, request, account)


@router.post("/account/tokens")
async def create_token(request: Request) -> Response:
    form = await check_csrf(request)
    account = _managed(request)
    name = str(form.get("name") or "").strip()
    if not name:
        return await run_in_threadpool(
            lambda: _tokens_page(request, account, error="Give the token a name.", status=400)
        )
    try:
        secret, token = await run_in_threadpool(
            lambda: services_of(request).accounts.create_token(account.username, name=name)
        )
    except DomainError as exc:
        detail, status = exc.detail, exc.status
        return await run_in_threadpool(lambda: _tokens_page(request, account, error=detail, status=status))
    # shown this once: the page is not cached (render sets Cache-Control: no-store)
    return await run_in_threadpool(lambda: _tokens_page(request, account, new={"token": secret, "name": token.name}))


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: str) -> Response:
    await check_csrf(request)
    account = _managed(request)
    services = services_of(request)
    if token_id not in {t.id for t in services.accounts.list_tokens(account.username)}:
        raise NotFound("No such token.")
    await run_in_threadpool(services.accounts.revoke_token, token_id)
    return redirect(request, "/account/tokens", notice="The token was revoked: it no longer works.")


# --- members ----------------------------------------------------------------------------------


def _org_owned(request: Request) -> Account:
    account = _managed(request)
    if account.type != "organization":
        raise NotFound("Switch to an organization you own to manage its members.")
    return account


@router.get("/account/members")
async def members_page(request: Request) -> Response:
    org = _org_owned(request)
    members = await run_in_threadpool(services_of(request).accounts.list_members, org.username)
    return render(request, "members.html", org=org, members=members, error=None)


@router.post("/account/members")
async def add_member(request: Request) -> Response:
    form = await check_csrf(request)
    org = _org_owned(request)
    services = services_of(request)
    username = str(form.get("username") or "").strip()
    role = str(form.get("role") or "member")
    try:
        await run_in_threadpool(lambda: services.accounts.add_member(org.username, username, role=role))
    except DomainError as exc:
        members = await run_in_threadpool(services.accounts.list_members, org.username)
        return render(request, "members.html", status=exc.status, org=org, members=members, error=exc.detail)
    return redirect(request, "/account/members", notice=f"{username} is now a {role} of {org.username}.")


@router.post("/account/members/{username}/remove")
async def remove_member(request: Request, username: str) -> Response:
    await check_csrf(request)
    org = _org_owned(request)
    services = services_of(request)
    try:
        await run_in_threadpool(services.accounts.remove_member, org.username, username)
    except DomainError as exc:
        members = await run_in_threadpool(services.accounts.list_members, org.username)
        return render(request, "members.html", status=exc.status, org=org, members=members, error=exc.detail)
    return redirect(request, "/account/members", notice=f"{username} was removed from {org.username}.")


# --- usage ----------------------------------------------------------------------------------


@router.get("/account/usage")
async def usage_page(request: Request, days: int = USAGE_DAYS) -> Response:
    viewer = require_viewer(request)
    account = acting_of(request) or viewer
    services = services_of(request)
    days = max(1, min(days, 366))
    until = datetime.now(UTC).date()
    since = until - timedelta(days=days - 1)
    rows = await run_in_threadpool(
        lambda: services.accounts.usage(account.username, since=since.isoformat(), until=until.isoformat())
    )
    prices = services.settings.hardware_prices
    per_day: dict[str, float] = {}
    for row in rows:
        per_day[row.day] = per_day.get(row.day, 0.0) + row.predict_time
    top = max(per_day.values(), default=0.0) or 1.0
    chart = [{"day": d, "seconds": s, "pct": round(100 * s / top, 1)} for d, s in sorted(per_day.items())]
    table: list[dict[str, Any]] = [
        {
            "day": r.day,
            "hardware": r.hardware,
            "seconds": r.predict_time,
            "predictions": r.predictions,
            "cost": r.predict_time * prices[r.hardware] if r.hardware in prices else None,
        }
        for r in rows
    ]
    total = sum(r.predict_time for r in rows)
    total_cost = sum(t["cost"] or 0.0 for t in table) if prices else None
    return render(
        request,
        "usage.html",
        account=account,
        chart=chart,
        table=table,
        total=total,
        total_cost=total_cost,
        prices=prices,
        days=days,
        since=since.isoformat(),
        until=until.isoformat(),
    )
