"""Teams pages in a real headless Chromium against the real stack: the account switcher, the
tokens page (shown once, revoked), the members page, the usage page."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.web.conftest import new_page

pytestmark = pytest.mark.system


def test_switcher_tokens_members_and_usage(stack, browser, shot):
    suffix = uuid.uuid4().hex[:6]
    user, helper, org = f"u{suffix}", f"h{suffix}", f"o{suffix}"
    with stack.client() as admin:  # the stack's first user is its admin
        token = admin.post("/v1/admin/users", json={"username": user}).json()["token"]
        assert admin.post("/v1/admin/users", json={"username": helper}).status_code == 201
        assert admin.post("/v1/admin/orgs", json={"name": org, "owner": user}).status_code == 201
    with stack.client(token) as api:
        assert api.post("/v1/models", json={"owner": org, "name": "private-one"}).status_code == 201

    context, page = new_page(browser)
    page.goto(f"{stack.url}/signin?next=/dashboard")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    assert page.get_by_role("heading", name="Your predictions").is_visible()

    page.select_option("#acting-as", org)  # submits the switcher form
    page.wait_for_url(re.compile(r"notice="))
    assert page.get_by_role("heading", name=f"Models of {org}").is_visible()
    assert page.locator(f'#my-models a[href="/{org}/private-one"]').count() == 1
    shot(page, "-org-dashboard")

    page.get_by_role("link", name="Tokens").click()
    page.fill("#token-name", "from the browser")
    page.get_by_role("button", name="Create token").click()
    new_token = page.locator("#new-token").inner_text().strip()
    assert new_token.startswith("r8_")
    with stack.client(new_token) as as_org:
        assert as_org.get("/v1/account").json()["username"] == org
    shot(page, "-token-shown-once")
    page.goto(f"{stack.url}/account/tokens")
    assert new_token not in page.content()
    row = page.locator("tr", has_text="from the browser")
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_url(re.compile(r"notice="))
    assert page.locator("tr", has_text="from the browser").count() == 0
    with stack.client(new_token) as as_org:
        assert as_org.get("/v1/account").status_code == 401

    page.get_by_role("link", name="Members").click()
    page.fill("#member-name", helper)
    page.get_by_role("button", name="Add").click()
    page.wait_for_url(re.compile(r"notice="))
    assert page.locator("tr", has_text=helper).count() == 1
    shot(page, "-members")

    page.get_by_role("link", name="Usage").click()
    assert page.get_by_role("heading", name=f"Usage of {org}").is_visible()
    context.close()
