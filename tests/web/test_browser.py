"""Acceptance: a real headless Chromium (Debian's, driven by Playwright) against the real stack."""

from __future__ import annotations

import re

import pytest

from tests.system.conftest import REPO, TOKEN
from tests.web.conftest import new_page

pytestmark = pytest.mark.system


def sign_in(page, url: str, next_path: str = "/dashboard") -> None:
    page.goto(f"{url}/signin?next={next_path}")
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(next_path) + r"$"))


@pytest.mark.slow
def test_style_transfer_run_share_dashboard_delete(stack, browser, shot):
    context, page = new_page(browser)
    sign_in(page, stack.url)
    assert page.get_by_role("heading", name="Your predictions").is_visible()
    page.goto(f"{stack.url}/")  # what a first-time user sees: the example models
    assert page.locator('a[href="/examples/style-transfer"]').count() == 1
    shot(page, "-explore")

    page.goto(f"{stack.url}/examples/style-transfer")
    assert page.get_by_role("heading", name="examples/style-transfer").is_visible()
    page.set_input_files("#image", str(REPO / "examples" / "style-transfer" / "input.png"))
    page.fill("#max_size", "128")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/p/[a-z0-9]+$"))
    prediction_url = page.url
    prediction_id = prediction_url.rsplit("/", 1)[1]

    image = page.locator("#output img")
    image.wait_for(state="visible", timeout=600_000)  # a cold boot builds the model's environment once
    page.wait_for_function(
        "() => { const i = document.querySelector('#output img'); return i && i.complete && i.naturalWidth > 0; }",
        timeout=60_000,
    )
    assert page.locator("#status").inner_text() == "succeeded"
    assert page.locator("#output a.download").count() == 1
    assert page.locator(".inputs img").count() == 1  # the uploaded input, shown as submitted
    shot(page, "-output")

    page.get_by_role("button", name="Share").click()
    page.wait_for_url(re.compile(r"notice="))
    assert "Anyone with this page's address" in page.content()

    stranger, spage = new_page(browser)  # signed out: a fresh context with no cookies
    spage.goto(prediction_url)
    spage.locator("#output img").wait_for(state="visible")
    spage.wait_for_function("() => document.querySelector('#output img').naturalWidth > 0")
    assert spage.get_by_role("button", name="Delete").count() == 0
    assert spage.get_by_role("link", name="Sign in").is_visible()
    shot(spage, "-signed-out")
    stranger.close()

    page.goto(f"{stack.url}/dashboard")
    row = page.locator("tr", has=page.locator(f'a[href="/p/{prediction_id}"]'))
    assert row.count() == 1
    assert "examples/style-transfer" in row.inner_text() and "succeeded" in row.inner_text()
    assert "web" in row.inner_text()
    shot(page, "-dashboard")

    page.goto(prediction_url)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"/dashboard"))
    assert page.locator(f'a[href="/p/{prediction_id}"]').count() == 0
    response = page.goto(prediction_url)
    assert response.status == 404
    assert page.get_by_text("There is nothing here").is_visible()
    shot(page)
    context.close()


def test_a_schema_with_every_input_kind_renders_every_control(stack, browser, shot):
    stack.cli("push", str(REPO / "tests" / "fixtures" / "predictors" / "inputs_all"), "local/all-inputs")
    context, page = new_page(browser)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, stack.url, "/local/all-inputs")
    form = page.locator("#run-form")
    names = form.locator(".field[data-field]").evaluate_all("els => els.map(e => e.dataset.field)")
    assert names == [
        "prompt",
        "story",
        "steps",
        "scale",
        "enhance",
        "fmt",
        "size",
        "image",
        "document",
        "api_key",
        "tags",
        "images",
        "negative",
        "seed",
        "slug",
        "legacy",
        "mask",
        "mode",
        "count",
    ]
    for name in names:  # every control is named after its input and labelled
        control = form.locator(f'[name="{name}"]')
        assert control.count() == 1, name
        assert page.locator(f'label[for="{name}"]').inner_text().split()[0] == name, name

    def attrs(selector, *names):
        return {n: page.get_attribute(selector, n) for n in names}

    assert page.evaluate("document.querySelector('#prompt').tagName") == "TEXTAREA"
    assert attrs("#story", "maxlength", "minlength") == {"maxlength": "5000", "minlength": "1"}
    assert attrs("#steps", "type", "min", "max", "step") == {"type": "number", "min": "1", "max": "10", "step": "1"}
    assert page.input_value("#steps") == "4"
    assert attrs('input.slider[data-for="scale"]', "type", "min", "max") == {"type": "range", "min": "0", "max": "20.5"}
    assert page.input_value("#scale") == "7.5"
    assert page.get_attribute("#enhance", "type") == "checkbox" and not page.is_checked("#enhance")
    assert page.eval_on_selector_all("#fmt option", "os => os.map(o => o.value)") == ["png", "jpg", "webp"]
    assert page.input_value("#fmt") == "png" and page.input_value("#size") == "512"
    assert page.get_attribute("#image", "type") == "file" and page.get_attribute("#image__url", "type") == "url"
    assert page.get_attribute("#api_key", "type") == "password"
    assert page.input_value("#tags") == "a\nb"
    assert page.get_attribute("#images", "multiple") is not None
    assert page.get_attribute("#slug", "pattern") == "^[a-z]+$" and page.input_value("#slug") == "cat"
    assert page.get_attribute("#mask", "accept") == "image/*"
    assert page.get_by_text("Guidance scale").is_visible()

    # the slider and the number field move together
    page.fill("#steps", "7")
    assert page.input_value('input.slider[data-for="steps"]') == "7"

    # client-side checks that mirror the schema: nothing is sent, each error is beside its field
    page.fill("#steps", "11")
    page.fill("#slug", "Not A Slug")
    page.get_by_role("button", name="Run", exact=True).click()
    assert page.locator("#steps-error").inner_text() == "Must be at most 10."
    assert page.locator("#slug-error").inner_text().startswith("Does not have the expected form")
    assert page.locator("#prompt-error").inner_text() == "This field is required."
    assert page.locator("#image-error").inner_text() == "Choose a file or paste its URL."
    assert page.evaluate("document.activeElement.id") == "prompt"  # focus moves to the first problem
    assert "/local/all-inputs" in page.url and "/p/" not in page.url
    assert not errors, errors
    shot(page, "-client-checks")

    # the server's 422 is shown beside the field it names (a file URL of ours that does not exist)
    page.fill("#prompt", "a prompt")
    page.fill("#steps", "5")
    page.fill("#slug", "dog")
    page.fill("#image__url", f"{stack.url}/v1/files/doesnotexist000")
    page.fill("#images__urls", "data:image/png;base64,iVBORw0KGgo=")
    page.fill("#mask__url", "data:image/png;base64,iVBORw0KGgo=")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_load_state()
    error = page.locator("#image-error")
    assert error.is_visible() and "does not exist" in error.inner_text()
    assert page.locator('[data-field="image"].has-error').count() == 1
    assert page.input_value("#prompt") == "a prompt" and page.input_value("#steps") == "5"
    shot(page)

    phone, ppage = new_page(browser, viewport={"width": 390, "height": 844}, is_mobile=True)
    sign_in(ppage, stack.url, "/local/all-inputs")
    assert ppage.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
    shot(ppage, "-phone")
    phone.close()
    context.close()


@pytest.mark.slow
def test_train_tab_trains_with_live_logs_and_the_new_version_says_where_it_came_from(stack, browser, shot):
    with stack.client() as c:
        r = c.post("/v1/models", json={"owner": "local", "name": "greeter-web"})
        assert r.status_code in (201, 409), r.text
    context, page = new_page(browser)
    sign_in(page, stack.url)
    page.goto(f"{stack.url}/examples/hello-train")
    page.get_by_role("link", name="Train", exact=True).click()
    page.wait_for_url(re.compile(r"/examples/hello-train/train\?version=[0-9a-f]{64}$"))
    assert page.locator("#prefix").is_visible() and page.locator("#text").count() == 0  # TrainingInput's form
    page.fill("#destination", "local/greeter-web")
    page.fill("#prefix", "ahoy")
    page.fill("#steps", "4")
    page.fill("#sleep", "0.5")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(r"/t/[a-z0-9]+$"))
    # the logs grow on the page while it trains (app.js polls /t/{id}/json)
    page.wait_for_function(
        "() => document.querySelector('#logs').textContent.includes('training step 1/4')", timeout=300_000
    )
    page.wait_for_function("() => document.querySelector('#status').textContent === 'succeeded'", timeout=120_000)
    assert "training step 4/4" in page.locator("#logs").inner_text()
    shot(page, "-training")
    page.reload()  # the page names the trained version once it exists
    page.locator("#trained-version").click()
    page.wait_for_url(re.compile(r"/local/greeter-web\?version=[0-9a-f]{64}$"))
    assert "trained from examples/hello-train:" in page.locator("#trained-from").inner_text()
    shot(page, "-trained-version")
    context.close()
