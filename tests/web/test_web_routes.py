"""The web routes through TestClient: sign-in and cookies, CSRF, privacy, sharing, deleting,
examples, the generated form and the server's 422 beside the field."""

from __future__ import annotations

import json
import re

import pytest

from cogplane.schema import generate_schema
from cogplane.services.presenters import blob_prefix, blob_ref
from cogplane.wiring import build_local
from functions.api.app import create_app
from tests.conftest import make_bundle
from tests.system.conftest import REPO
from tests.web.conftest import ALICE, Web, csrf_of

PNG_URI = "data:image/png;base64,iVBORw0KGgo="  # a data: URI (URL inputs are fetched, and tests are offline)


def push(services, owner: str, name: str, schema: dict, *, visibility: str = "public"):
    account = services.state.get_account(owner)
    services.catalog.create_model(account, {"owner": owner, "name": name, "visibility": visibility})
    version, _ = services.catalog.push_version(
        account, owner, name, bundle=make_bundle({"x": name}), schema=schema, config={}, cog_version="0.23.1"
    )
    return version


def run(web: Web, model: str, data: dict, files=None):
    page = web.get(f"/{model}")
    return web.client.post(
        f"/{model}/run", data={"csrf": csrf_of(page.text), **data}, files=files or {}, follow_redirects=False
    )


def finish(services, prediction_id: str, output) -> None:
    services.state.update_prediction(prediction_id, {"status": "processing", "started_at": services.clock.now()})
    services.state.update_prediction(
        prediction_id,
        {
            "status": "succeeded",
            "output": output,
            "completed_at": services.clock.now(),
            "metrics": {"predict_time": 0.5},
        },
    )


@pytest.fixture
def hello(web_app, services, schema):
    return push(services, "alice", "hello", schema)


def test_sign_in_sets_a_signed_httponly_lax_secure_cookie_without_the_token(web):
    r = web.sign_in(ALICE)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("cogplane_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert ALICE not in value and "alice" not in value  # base64 of the username, never the token
    assert r.headers["location"] == "/dashboard"
    assert "Your predictions" in web.get("/dashboard").text


def test_no_secure_flag_over_plain_http(tmp_path):
    from cogplane.settings import Settings

    settings = Settings(home=tmp_path / "h", public_url="")
    services = build_local(settings, base_url="http://testserver")
    services.accounts.ensure_account("alice")
    services.accounts.issue_token("alice", ALICE)
    web = Web(create_app(services), "http://testserver")
    cookie = web.sign_in(ALICE).headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" not in cookie


def test_a_wrong_token_is_refused_in_plain_words(web):
    r = web.post("/signin", {"token": "r8_not-a-real-token-000000000"}, from_page="/signin")
    assert r.status_code == 401 and "That token is not valid" in r.text
    assert "set-cookie" not in r.headers or "cogplane_session=" not in r.headers["set-cookie"]


def test_a_forged_or_tampered_session_is_ignored(web):
    web.sign_in(ALICE)
    value = web.client.cookies.get("cogplane_session")
    web.client.cookies.set("cogplane_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    r = web.get("/dashboard", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin")


def test_posts_without_the_csrf_token_are_refused(web, hello):
    web.sign_in(ALICE)
    r = web.client.post("/signout", data={}, follow_redirects=False)
    assert r.status_code == 403 and "Reload the page" in r.text
    r = web.client.post("/alice/hello/run", data={"prompt": "x", "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    r = web.client.post("/signin", data={"token": ALICE}, follow_redirects=False)
    assert r.status_code == 403  # login CSRF: the sign-in form has its own token too
    assert web.post("/signout").status_code == 303
    assert web.get("/dashboard", follow_redirects=False).status_code == 303


def test_dashboard_and_running_need_a_session(web, hello):
    r = web.get("/dashboard", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Fdashboard"
    assert "Sign in to run" in web.get("/alice/hello").text


def test_run_creates_a_web_prediction_with_the_uploaded_file(web, services, hello):
    web.sign_in(ALICE)
    r = run(
        web, "alice/hello", {"prompt": "hi", "steps": "3"}, files={"image": ("in.png", b"\x89PNG fake", "image/png")}
    )
    assert r.status_code == 303, r.text
    prediction_id = r.headers["location"].rsplit("/", 1)[1]
    p = services.state.get_prediction(prediction_id)
    assert p.source == "web" and p.remove_at is None and p.input["prompt"] == "hi" and p.input["steps"] == 3
    assert re.match(r"^https://cogplane\.test/v1/files/[a-z0-9]+$", p.input["image"])
    page = web.get(f"/p/{prediction_id}").text
    assert "Tweak it" in page and "Cancel" in page and 'id="prediction-state"' in page
    state = web.get(f"/p/{prediction_id}/json").json()
    assert state["status"] == "starting" and state["running"] is True
    tweak = web.get(f"/alice/hello?source={prediction_id}").text
    assert ">hi</textarea>" in tweak and 'value="3"' in tweak


def test_the_server_422_is_shown_beside_the_field_it_names(web, hello):
    web.sign_in(ALICE)
    r = run(web, "alice/hello", {"prompt": "hi", "steps": "11", "image__url": PNG_URI})
    assert r.status_code == 422
    assert re.search(
        r'data-field="steps"[^>]*>.*?<p class="error" id="steps-error"\s*>Must be at most 10\.</p>', r.text, re.S
    )
    assert 'value="11"' in r.text  # what was typed stays
    r = run(web, "alice/hello", {"steps": "2.5"})
    assert re.search(r'id="prompt-error"\s*>This field is required\.<', r.text)
    assert re.search(r'id="steps-error"\s*>Enter a whole number\.<', r.text)


def test_predictions_are_private_until_shared_then_deleted_with_their_files(web, other, services, hello):
    web.sign_in(ALICE)
    r = run(web, "alice/hello", {"prompt": "hi", "image__url": PNG_URI})
    prediction_id = r.headers["location"].rsplit("/", 1)[1]
    key = f"{blob_prefix(services.state.get_prediction(prediction_id))}0/out.png"
    services.blobs.put(key, b"\x89PNG out", content_type="image/png")
    finish(services, prediction_id, blob_ref(key))
    page = web.get(f"/p/{prediction_id}").text
    assert "<img" in page and "Download out.png" in page

    assert other.get(f"/p/{prediction_id}").status_code == 404  # signed out
    assert other.get(f"/p/{prediction_id}/json").status_code == 404
    other.sign_in("r8_web-bob-token-0123456789abcdef")
    assert other.get(f"/p/{prediction_id}").status_code == 404  # a stranger
    bob_csrf = csrf_of(other.get("/").text)
    r = other.client.post(f"/p/{prediction_id}/share", data={"csrf": bob_csrf}, follow_redirects=False)
    assert r.status_code == 404  # a stranger cannot share (or learn that it exists)
    assert other.client.post(f"/p/{prediction_id}/delete", data={"csrf": bob_csrf}).status_code == 404

    assert web.post(f"/p/{prediction_id}/share", {"shared": "true"}).status_code == 303
    shared = other.get(f"/p/{prediction_id}")
    assert shared.status_code == 200 and "Download out.png" in shared.text and ">Delete<" not in shared.text

    assert web.post(f"/p/{prediction_id}/delete").headers["location"].startswith("/dashboard")
    assert services.state.get_prediction(prediction_id) is None
    assert services.blobs.head(key) is None
    gone = web.get(f"/p/{prediction_id}")
    assert gone.status_code == 404 and "There is nothing here" in gone.text


def test_owners_add_examples_and_explore_lists_models_with_examples(web, services, hello, schema):
    push(services, "bob", "other", schema)
    web.sign_in(ALICE)
    explore = web.get("/").text
    assert "No model has examples yet" in explore and "alice / </span> hello" not in explore
    assert "/alice/hello" in explore and "/bob/other" in explore
    r = run(web, "alice/hello", {"prompt": "an example", "image__url": PNG_URI})
    prediction_id = r.headers["location"].rsplit("/", 1)[1]
    finish(services, prediction_id, "hello an example")
    assert "Add to examples" in web.get(f"/p/{prediction_id}").text
    assert web.post(f"/p/{prediction_id}/examples").status_code == 303
    model = services.state.get_model("alice", "hello")
    assert model.example_ids == [prediction_id] and services.state.get_prediction(prediction_id).shared
    page = web.get("/alice/hello").text
    assert f"/p/{prediction_id}" in page and "hello an example" in page
    assert '"prompt": "an example"' in page or '"prompt": \\"an example' in page or "an example" in page
    explore = web.get("/").text
    assert "No model has examples yet" not in explore
    assert "/alice/hello" in explore and "/bob/other" not in explore
    assert "/alice/hello" not in web.get("/?q=nomatch").text
    # someone else's model: no "Add to examples" for a prediction on it
    r = run(web, "bob/other", {"prompt": "x", "image__url": PNG_URI})
    other_id = r.headers["location"].rsplit("/", 1)[1]
    finish(services, other_id, "x")
    assert "Add to examples" not in web.get(f"/p/{other_id}").text
    assert web.post(f"/p/{other_id}/examples").status_code == 403


def test_dashboard_lists_newest_first_and_pages(web, services, hello):
    web.sign_in(ALICE)
    ids = []
    for i in range(22):
        r = run(web, "alice/hello", {"prompt": f"p{i}", "image__url": PNG_URI})
        ids.append(r.headers["location"].rsplit("/", 1)[1])
    first = web.get("/dashboard").text
    shown = re.findall(r'href="/p/([a-z0-9]+)"', first)
    assert shown == list(reversed(ids))[:20]
    assert "alice/hello" in first and "web" in first and "starting" in first
    nxt = re.search(r'href="(/dashboard\?cursor=[^"]+)"', first).group(1)
    second = re.findall(r'href="/p/([a-z0-9]+)"', web.get(nxt.replace("&amp;", "&")).text)
    assert second == list(reversed(ids))[20:]


def test_the_form_has_a_control_for_every_cog_input_kind(web, services):
    schema = generate_schema(REPO / "tests" / "fixtures" / "predictors" / "inputs_all")
    push(services, "alice", "all-inputs", schema)
    html = web.get("/alice/all-inputs").text
    names = re.findall(r'data-field="([a-z_]+)"', html)
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
    ]  # x-order
    assert re.search(r'<textarea id="prompt" name="prompt"[^>]* required', html)
    assert re.search(r'<textarea id="story" name="story"[^>]*maxlength="5000" minlength="1"', html)
    assert re.search(r'<input type="number" id="steps" name="steps" value="4" step="1" min="1" max="10"', html)
    assert 'data-for="steps"' in html and 'data-for="scale"' in html  # sliders
    assert re.search(r'<input type="number" id="scale" name="scale" value="7.5" step="any" min="0" max="20.5"', html)
    assert re.search(r'<input type="checkbox" id="enhance" name="enhance" value="true"', html)
    assert re.search(r'<option value="png" selected>png</option>', html)
    assert re.search(r'<option value="512" selected>512</option>', html)
    assert re.search(r'<input type="file" id="image" name="image"', html) and 'name="image__url"' in html
    assert re.search(r'<input type="password" id="api_key" name="api_key"', html)
    assert re.search(r'<textarea id="tags" name="tags"[^>]*>a\nb</textarea>', html)
    assert re.search(r'<input type="file" id="images" name="images" multiple', html)
    assert re.search(r'<input type="text" id="slug" name="slug" value="cat" pattern="\^\[a-z\]\+\$"', html)
    assert re.search(r'<input type="file" id="mask" name="mask" accept="image/\*"', html)
    assert "Text prompt" in html and "Guidance scale" in html and "deprecated" in html
    for name in names:
        assert f'for="{name}"' in html  # every control has a label
    snippet = json.dumps("alice/all-inputs")[1:-1]
    assert snippet in html and "replicate.Client(base_url=" in html and "curl -s -X POST" in html


# --- trainings -------------------------------------------------------------------------------


@pytest.fixture
def trainable(web_app, services, schema):
    from tests.conftest import TRAIN_SCHEMA_EXTRA

    schema = json.loads(json.dumps(schema))  # the `hello` model keeps the plain schema
    schema["components"]["schemas"].update(TRAIN_SCHEMA_EXTRA)
    version = push(services, "alice", "base", schema)
    services.catalog.create_model(services.state.get_account("alice"), {"owner": "alice", "name": "tuned"})
    return version


def test_train_tab_form_from_training_input_starts_a_web_training(web, services, trainable, hello):
    web.sign_in(ALICE)
    page = web.get("/alice/base").text
    assert 'id="train-tab"' in page and "/alice/base/train?version=" in page
    assert 'id="train-tab"' not in web.get("/alice/hello").text  # no `train:`, no Train tab
    assert web.get("/alice/hello/train").status_code == 404
    form = web.get(f"/alice/base/train?version={trainable.id}").text
    assert 'id="prefix"' in form and 'id="destination"' in form and 'id="prompt"' not in form  # TrainingInput
    r = web.client.post(
        "/alice/base/train",
        data={
            "csrf": csrf_of(form),
            "version": trainable.id,
            "destination": "alice/tuned",
            "prefix": "yo",
            "steps": "2",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    training_id = r.headers["location"].rsplit("/", 1)[1]
    assert r.headers["location"] == f"/t/{training_id}"
    t = services.state.get_prediction(training_id)
    assert t.kind == "training" and t.source == "web" and t.remove_at is None
    assert t.input == {"prefix": "yo", "steps": 2} and t.destination == "alice/tuned"
    page = web.get(f"/t/{training_id}").text
    assert "alice/base</a> / training" in page and 'id="destination"' in page and "Tweak it" not in page
    assert web.get(f"/t/{training_id}/json").json()["status"] == "starting"  # what app.js polls for live logs


def test_train_form_errors_name_the_field(web, trainable):
    web.sign_in(ALICE)
    form = web.get("/alice/base/train").text
    r = web.client.post(
        "/alice/base/train",
        data={"csrf": csrf_of(form), "destination": "alice/nope", "prefix": "yo"},
        follow_redirects=False,
    )
    assert r.status_code == 422
    assert re.search(r'id="destination-error"\s*>Model alice/nope does not exist', r.text)
    r = web.client.post(
        "/alice/base/train",
        data={"csrf": csrf_of(form), "destination": "alice/tuned", "steps": "0"},
        follow_redirects=False,
    )
    assert r.status_code == 422 and re.search(r'id="prefix-error"\s*>This field is required\.<', r.text)


def test_trained_version_page_says_where_it_came_from(web, services, trainable):
    training = services.trainings.create(
        services.state.get_account("alice"),
        "alice",
        "base",
        trainable.id,
        {"destination": "alice/tuned", "input": {"prefix": "yo"}},
    )
    services.blobs.put(f"predictions/{training.id}/w.txt", b"yo")
    done = services.trainings.complete(
        training, {"status": "succeeded", "output": {"weights": blob_ref(f"predictions/{training.id}/w.txt")}}
    )
    finish(services, training.id, done["output"])
    web.sign_in(ALICE)
    page = web.get("/alice/tuned").text
    assert re.search(
        r'id="trained-from">This version was trained from <a href="/alice/base\?version='
        + trainable.id
        + r'">alice/base:',
        page,
    )
    assert 'class="tag">trained<' in page
    new_id = done["output"]["version"].split(":")[1]
    assert f'id="trained-version" href="/alice/tuned?version={new_id}"' in web.get(f"/t/{training.id}").text
