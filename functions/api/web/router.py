"""The web UI: server-rendered pages (Jinja2) with a little vanilla JavaScript, in the API's app.

Pages: `/` explore, `/signin`, `/dashboard`, `/p/{id}` a prediction (its JSON for polling at
`/p/{id}/json`), `/{owner}/{name}` a model with its generated form. Every POST carries the
session's CSRF token (hidden field `csrf`, or the `X-CSRF-Token` header). Errors inside these
routes are answered as HTML pages in plain words, not problem+json.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from cogplane.domain.entities import Account, Model, Prediction, Version
from cogplane.domain.errors import DomainError, Forbidden, InputValidationError, NotFound, Unauthenticated
from cogplane.domain.status import TERMINAL, Status
from cogplane.domain.timefmt import parse, seconds_between
from cogplane.domain.validation import validate_input
from cogplane.schema import has_training, is_concatenate_output, is_file_output, is_iterator_output, training_view
from cogplane.services.files import file_id_from_url
from cogplane.services.web import WebService
from functions.api.deps import ApiRoute, base_url
from functions.api.errors import problem
from functions.api.web import session as sess
from functions.api.web.forms import Field, fields_for, parse_form

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import jinja2
    from starlette.datastructures import UploadFile

    from cogplane.wiring import Services

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PAGE_SIZE = 20
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg", ".avif")
AUDIO_EXT = (".wav", ".mp3", ".ogg", ".flac", ".m4a", ".aac", ".opus")
VIDEO_EXT = (".mp4", ".webm", ".mov", ".m4v", ".mkv")
ACTING_COOKIE = "cogplane_as"  # the org a signed-in user acts as (functions/api/web/teams.py)
NOT_FOUND_WORDS = "There is nothing here. The page may have been deleted, or it may be private to someone else."


class WebRoute(ApiRoute):
    """Domain errors raised by a web page become an HTML page with the same status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as exc:
                if request.url.path.endswith("/json"):
                    return problem(exc.status, exc.detail)
                if isinstance(exc, Unauthenticated):
                    return _to_signin(request)
                detail = NOT_FOUND_WORDS if exc.status == 404 else exc.detail
                return render(request, "error.html", status=exc.status, code=exc.status, title=exc.title, detail=detail)

        return run


router = APIRouter(route_class=WebRoute, include_in_schema=False)


# --- plumbing -------------------------------------------------------------------------------

_ENV: dict[str, Any] = {}


def env() -> jinja2.Environment:
    if "env" not in _ENV:
        import jinja2  # imported on the first page, not at Lambda init

        e = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        e.filters["short_id"] = lambda v: (v or "")[:12]
        e.filters["when"] = _when
        e.filters["seconds"] = _seconds
        e.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False)
        e.globals["asset_v"] = _asset_version()
        _ENV["env"] = e
    return _ENV["env"]


def _asset_version() -> str:
    stamps = [int(p.stat().st_mtime) for p in STATIC.iterdir() if p.is_file()]
    return str(max(stamps, default=0))


def _when(ts: str | None) -> str:
    if not ts:
        return ""
    return parse(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {int(value % 60)} s"


def services_of(request: Request) -> Services:
    return request.app.state.services


def web_service(request: Request) -> WebService:
    return services_of(request).web


def key_of(request: Request) -> bytes:
    return sess.session_key(services_of(request))


def current_session(request: Request) -> tuple[Account | None, dict | None]:
    if hasattr(request.state, "web_viewer"):
        return request.state.web_viewer, request.state.web_session
    data = sess.read_session(key_of(request), request.cookies.get(sess.SESSION_COOKIE))
    account = services_of(request).state.get_account(data["u"]) if data else None
    request.state.web_viewer, request.state.web_session = account, data if account else None
    return account, request.state.web_session


def viewer_of(request: Request) -> Account | None:
    return current_session(request)[0]


def acting_of(request: Request) -> Account | None:
    """The account the signed-in user acts as: an org of theirs (the switcher's choice) or themselves."""
    if hasattr(request.state, "web_acting"):
        return request.state.web_acting
    viewer = viewer_of(request)
    acting = viewer
    chosen = request.cookies.get(ACTING_COOKIE)
    if viewer is not None and chosen and chosen != viewer.username:
        services = services_of(request)
        if services.accounts.can_act_for(viewer, chosen):
            acting = services.state.get_account(chosen) or viewer
    request.state.web_acting = acting
    return acting


def switcher(request: Request) -> dict[str, Any]:
    """Template context of the account switcher (rendered by base.html)."""
    viewer = viewer_of(request)
    if viewer is None or viewer.type != "user":
        return {"acting": viewer, "orgs": []}
    orgs = [m.org for m in services_of(request).accounts.memberships(viewer.username)]
    return {"acting": acting_of(request), "orgs": orgs}


def require_viewer(request: Request) -> Account:
    account = viewer_of(request)
    if account is None:
        raise Unauthenticated("Sign in first.")
    return account


def _nonce(request: Request) -> str:
    _, data = current_session(request)
    if data:
        return data["n"]
    nonce = request.cookies.get(sess.ANON_COOKIE) or getattr(request.state, "anon_nonce", None)
    if not nonce:
        nonce = request.state.anon_nonce = sess.new_nonce()
    return nonce


def secure(request: Request) -> bool:
    public = services_of(request).settings.public_url or ""
    return (
        request.url.scheme == "https"
        or request.headers.get("x-forwarded-proto", "").startswith("https")
        or public.startswith("https://")
    )


def root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    viewer = viewer_of(request)
    html = (
        env()
        .get_template(template)
        .render(
            request=request,
            root=root(request),
            viewer=viewer,
            csrf=sess.csrf_token(key_of(request), _nonce(request)),
            notice=request.query_params.get("notice"),
            **switcher(request),
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
    fresh = getattr(request.state, "anon_nonce", None)
    if fresh and viewer is None:
        response.set_cookie(
            sess.ANON_COOKIE,
            fresh,
            httponly=True,
            samesite="lax",
            secure=secure(request),
            path="/",
            max_age=sess.SESSION_SECONDS,
        )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def redirect(request: Request, path: str, **params: str) -> RedirectResponse:
    query = ("?" + urlencode(params)) if params else ""
    return RedirectResponse(root(request) + path + query, status_code=303)


def _to_signin(request: Request) -> Response:
    target = request.url.path
    if request.method != "GET":
        target = request.headers.get("referer") and urlparse(request.headers["referer"]).path or "/"
    return redirect(request, "/signin", next=target)


async def check_csrf(request: Request) -> Any:
    """The submitted form, once its CSRF token matches the session's (else 403)."""
    form = await request.form()
    token = form.get("csrf") or request.headers.get("x-csrf-token")
    if not sess.csrf_ok(key_of(request), _nonce(request), token if isinstance(token, str) else None):
        raise Forbidden("This form has expired or did not come from this site. Reload the page and try again.")
    return form


def _safe_next(value: Any) -> str:
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


# --- static files -----------------------------------------------------------------------------


@router.get("/static/web/{name}")
def static_file(name: str) -> Response:
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise NotFound("No such file.")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(path.read_bytes(), media_type=media, headers={"Cache-Control": "public, max-age=3600"})


# --- sign in / out ---------------------------------------------------------------------------


@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "signin.html", next=_safe_next(next), error=None)


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await check_csrf(request)
    token = str(form.get("token") or "").strip()
    target = _safe_next(form.get("next"))
    services = services_of(request)
    try:
        account = await run_in_threadpool(services.accounts.authenticate, f"Bearer {token}")
    except Unauthenticated:
        return render(
            request,
            "signin.html",
            status=401,
            next=target,
            error="That token is not valid. Use the API token printed by `make up` "
            "(it is also kept in .cogplane/token).",
        )
    response = RedirectResponse(root(request) + target, status_code=303)
    response.set_cookie(
        sess.SESSION_COOKIE,
        sess.make_session(key_of(request), account.username),
        httponly=True,
        samesite="lax",
        secure=secure(request),
        path="/",
        max_age=sess.SESSION_SECONDS,
    )
    response.delete_cookie(sess.ANON_COOKIE, path="/")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    await check_csrf(request)
    response = redirect(request, "/", notice="You are signed out.")
    response.delete_cookie(sess.SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure(request))
    return response


# --- explore & dashboard -----------------------------------------------------------------------


@router.get("/")
async def explore(request: Request, q: str = "", collection: str = "") -> HTMLResponse:
    entries, fallback = await run_in_threadpool(web_service(request).explore, q, collection or None)
    return render(
        request,
        "explore.html",
        entries=entries,
        fallback=fallback,
        q=q,
        collection=collection,
        collections=web_service(request).collections(),
    )


@router.get("/dashboard")
async def dashboard(request: Request, cursor: str | None = None) -> HTMLResponse:
    viewer = require_viewer(request)
    acting = acting_of(request) or viewer  # the switcher scopes the dashboard to yourself or one of your orgs
    page = await run_in_threadpool(web_service(request).dashboard, acting, cursor=cursor, limit=PAGE_SIZE)
    models = await run_in_threadpool(lambda: services_of(request).state.list_models_of(acting.username, limit=50))
    return render(request, "dashboard.html", page=page, first=cursor is None, models=models.items)


# --- predictions -----------------------------------------------------------------------------


def visible_prediction(request: Request, prediction_id: str) -> Prediction:
    return services_of(request).predictions.get(viewer_of(request), prediction_id)


def version_for(request: Request, p: Prediction) -> Version | None:
    owner, _, name = p.model.partition("/")
    return services_of(request).state.get_version(owner, name, p.version)


def _sign(request: Request) -> Callable[[str], str]:
    services = services_of(request)
    ttl = services.settings.output_url_ttl_seconds

    def sign(key: str) -> str:
        return services.blobs.signed_url(key, expires_in=ttl)

    return sign


def media_kind(url: str) -> str:
    if url.startswith("data:"):
        mime = url[5:].split(";", 1)[0]
    else:
        mime = mimetypes.guess_type(urlparse(url).path)[0] or ""
        path = urlparse(url).path.lower()
        if path.endswith(IMAGE_EXT):
            return "image"
        if path.endswith(AUDIO_EXT):
            return "audio"
        if path.endswith(VIDEO_EXT):
            return "video"
    return mime.split("/", 1)[0] if mime.split("/", 1)[0] in ("image", "audio", "video") else "file"


def file_name(url: str) -> str:
    if url.startswith("data:"):
        return "output"
    return Path(urlparse(url).path).name or "output"


def _is_file_url(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith("data:") or "/v1/blobs/" in value or "/v1/files/" in value)


def output_view(p: Prediction, version: Version | None, sign: Callable[[str], str]) -> dict[str, Any]:
    """What the output area shows: text, files (with their kind), or JSON."""
    from cogplane.services.presenters import resolve_blob_refs

    schema = version.openapi_schema if version else {}
    value = resolve_blob_refs(p.output, sign) if p.output is not None else None
    if value is None:
        return {"kind": "empty"}
    uri_out = is_file_output(schema)
    values = value if isinstance(value, list) else [value]
    if values and all(isinstance(v, str) for v in values) and (uri_out or all(_is_file_url(v) for v in values)):
        return {"kind": "files", "files": [{"url": v, "kind": media_kind(v), "name": file_name(v)} for v in values]}
    if isinstance(value, str):
        return {"kind": "text", "text": value}
    if (
        isinstance(value, list)
        and all(isinstance(v, str) for v in value)
        and (is_iterator_output(schema) or is_concatenate_output(schema))
    ):
        return {"kind": "text", "text": "".join(value)}
    return {"kind": "json", "json": value}


def input_view(request: Request, p: Prediction, version: Version | None) -> list[dict[str, Any]]:
    """The input as submitted, in x-order; files become viewable links, secrets are masked."""
    services = services_of(request)
    fields = {f.name: f for f in fields_for(version.openapi_schema)} if version else {}
    inputs = p.input or {}
    order = list(fields) + [k for k in inputs if k not in fields]
    rows = []
    for name in order:
        if name not in inputs:
            continue
        value = inputs[name]
        f = fields.get(name)
        row: dict[str, Any] = {"name": name, "value": value, "kind": "value"}
        if f is not None and f.kind == "secret":
            row.update(kind="secret")
        elif f is not None and f.kind in ("file", "files"):
            urls = value if isinstance(value, list) else [value]
            files = []
            for url in urls:
                shown = services.files.fetchable_url(url) if file_id_from_url(url) else url
                files.append({"url": shown, "kind": media_kind(shown), "name": file_name(shown)})
            row.update(kind="files", files=files)
        rows.append(row)
    return rows


def timing(p: Prediction, now: str) -> dict[str, Any]:
    end = p.completed_at or now
    return {
        "elapsed": round(max(0.0, seconds_between(p.created_at, end)), 3),
        "running": p.status not in TERMINAL,
        "predict_time": (p.metrics or {}).get("predict_time"),
    }


def prediction_state(request: Request, p: Prediction, version: Version | None) -> dict[str, Any]:
    output = output_view(p, version, _sign(request))
    html = env().get_template("_output.html").render(output=output, p=p)
    return {
        "id": p.id,
        "status": p.status,
        "logs": p.logs or "",
        "error": p.error,
        "output_html": html,
        "shared": p.shared,
        "data_removed": p.data_removed,
        **timing(p, services_of(request).clock.now()),
    }


@router.get("/t/{training_id}")
async def training_page(request: Request, training_id: str) -> HTMLResponse:
    """A training's page: the prediction page (live logs, cancel) with its destination."""
    return await prediction_page(request, training_id)


@router.get("/t/{training_id}/json")
async def training_json_state(request: Request, training_id: str) -> JSONResponse:
    return await prediction_json_state(request, training_id)


@router.get("/p/{prediction_id}")
async def prediction_page(request: Request, prediction_id: str) -> HTMLResponse:
    p = await run_in_threadpool(visible_prediction, request, prediction_id)
    version = version_for(request, p)
    viewer = viewer_of(request)
    mine = viewer is not None and viewer.username == p.owner
    owner, _, name = p.model.partition("/")
    model = services_of(request).state.get_model(owner, name)
    state = prediction_state(request, p, version)
    can_example = (
        mine
        and model is not None
        and model.owner == p.owner  # == viewer.username (mine)
        and p.status == Status.SUCCEEDED
        and p.remove_at is None
    )
    trained = p.output.get("version", "") if p.kind == "training" and isinstance(p.output, dict) else ""
    return render(
        request,
        "prediction.html",
        p=p,
        state=state,
        mine=mine,
        model=model,
        trained_version=trained.partition(":")[2] if isinstance(trained, str) else "",
        inputs=input_view(request, p, version),
        can_example=can_example,
        is_example=model is not None and p.id in model.example_ids,
        state_json=json.dumps({k: v for k, v in state.items() if k != "output_html"}).replace("<", "\\u003c"),
    )


@router.get("/p/{prediction_id}/json")
async def prediction_json_state(request: Request, prediction_id: str) -> JSONResponse:
    p = await run_in_threadpool(visible_prediction, request, prediction_id)
    return JSONResponse(prediction_state(request, p, version_for(request, p)), headers={"Cache-Control": "no-store"})


async def _own_action(request: Request, prediction_id: str, action: Callable[[Account, str], object]) -> Account:
    await check_csrf(request)
    viewer = require_viewer(request)
    await run_in_threadpool(action, viewer, prediction_id)
    return viewer


@router.post("/p/{prediction_id}/cancel")
async def cancel(request: Request, prediction_id: str) -> Response:
    await _own_action(request, prediction_id, services_of(request).predictions.cancel)
    if request.headers.get("x-requested-with") == "fetch":
        return JSONResponse({"ok": True})
    return redirect(request, f"/p/{prediction_id}", notice="Canceled.")


@router.post("/p/{prediction_id}/share")
async def share(request: Request, prediction_id: str) -> Response:
    form = await check_csrf(request)
    on = form.get("shared", "true") != "false"
    await _own_action(request, prediction_id, lambda v, i: web_service(request).share(v, i, on))
    words = "Shared: anyone with this page's address can see it now." if on else "This prediction is private again."
    return redirect(request, f"/p/{prediction_id}", notice=words)


@router.post("/p/{prediction_id}/delete")
async def delete(request: Request, prediction_id: str) -> Response:
    await _own_action(request, prediction_id, web_service(request).delete)
    return redirect(request, "/dashboard", notice="The prediction and its files were deleted.")


@router.post("/p/{prediction_id}/examples")
async def add_example(request: Request, prediction_id: str) -> Response:
    form = await check_csrf(request)
    web = web_service(request)
    remove = form.get("remove") == "true"
    await _own_action(request, prediction_id, web.remove_example if remove else web.add_example)
    words = "Removed from the model's examples." if remove else "Added to the model's examples (and shared)."
    return redirect(request, f"/p/{prediction_id}", notice=words)


# --- models ----------------------------------------------------------------------------------


def _python(value: Any, indent: int = 4) -> str:
    """A value as a Python literal."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str | int | float):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_python(v, indent) for v in value) + "]"
    if isinstance(value, dict):
        pad = " " * (indent + 4)
        inner = ",\n".join(f"{pad}{json.dumps(k)}: {_python(v, indent + 4)}" for k, v in value.items())
        return "{\n" + inner + "\n" + " " * indent + "}"
    return repr(value)


def snippets(base: str, model: Model, version: Version, fields: list[Field], example: dict | None) -> dict[str, str]:
    sample: dict[str, Any] = {}
    for f in fields:
        if example and f.name in example and f.kind != "secret":
            sample[f.name] = example[f.name]
        elif f.required:
            sample[f.name] = {
                "file": "https://example.com/your-file.png",
                "files": ["https://example.com/a.png"],
                "integer": int(f.minimum or 0),
                "number": f.minimum or 0,
                "boolean": False,
                "select": f.choices[0] if f.choices else "",
            }.get(f.kind, "...")
    ref = f"{model.full_name}:{version.id}"
    py = (
        f"import replicate\n\n# export REPLICATE_API_TOKEN=<your token>\n"
        f'client = replicate.Client(base_url="{base}")\n'
        f'output = client.run(\n    "{ref}",\n    input={_python(sample, 4)}\n)\nprint(output)\n'
    )
    js_input = json.dumps(sample, indent=2, ensure_ascii=False).replace("\n", "\n  ")
    js = (
        f'import Replicate from "replicate";\n\n// export REPLICATE_API_TOKEN=<your token>\n'
        f'const replicate = new Replicate({{ baseUrl: "{base}/v1" }});\n'
        f'const output = await replicate.run("{ref}", {{\n  input: {js_input}\n}});\nconsole.log(output);\n'
    )
    body = json.dumps({"input": sample}, ensure_ascii=False).replace("'", "'\\''")
    curl = (
        f"curl -s -X POST {base}/v1/models/{model.full_name}/predictions \\\n"
        f'  -H "Authorization: Bearer $REPLICATE_API_TOKEN" \\\n'
        f'  -H "Content-Type: application/json" -H "Prefer: wait" \\\n'
        f"  -d '{body}'\n"
    )
    return {"python": py, "javascript": js, "curl": curl}


def model_context(request: Request, owner: str, name: str, version_id: str | None) -> dict[str, Any]:
    services = services_of(request)
    viewer = viewer_of(request)
    model = services.catalog.get_model(viewer, owner, name)
    versions = services.state.list_versions(owner, name, limit=20).items
    version = None
    if version_id:
        version = services.catalog.get_version(viewer, owner, name, version_id)
    elif model.latest_version_id:
        version = services.state.get_version(owner, name, model.latest_version_id)
    examples = web_service(request).examples(model)
    sign = _sign(request)
    example_views = [{"p": e, "output": output_view(e, version_for(request, e), sign)} for e in examples]
    fields = fields_for(version.openapi_schema) if version else []
    base = base_url(request)
    example_input = examples[0].input if examples else None
    from cogplane import builds

    build = builds.read(services.blobs, version) if version else None
    return {
        "model": model,
        "versions": versions,
        "version": version,
        "fields": fields,
        "build": build,
        "trainable": version is not None and has_training(version.openapi_schema or {}),
        "examples": example_views,
        "is_owner": viewer is not None and viewer.username == owner,
        "snippets": snippets(base, model, version, fields, example_input) if version else None,
    }


def _reserved(owner: str) -> bool:
    return owner in ("v1", "static", "p", "t", "account")


@router.get("/{owner}/{name}")
async def model_page(
    request: Request, owner: str, name: str, version: str | None = None, source: str | None = None
) -> Response:
    if _reserved(owner):
        return problem(404, "The requested resource could not be found.")
    ctx = await run_in_threadpool(model_context, request, owner, name, version)
    values: dict[str, Any] = {f.name: f.default for f in ctx["fields"]}
    if source:  # "Tweak it": the form prefilled with that prediction's input (secrets excluded)
        p = visible_prediction(request, source)
        for f in ctx["fields"]:
            if p.input and f.name in p.input and f.kind != "secret":
                values[f.name] = p.input[f.name]
    return render(request, "model.html", values=values, errors={}, **ctx)


def plain_error(f: Field | None, error: dict[str, Any]) -> str:
    """A validation error in words a person understands."""
    rule, msg = error.get("type"), str(error.get("msg") or "")
    if f is None:
        return msg
    if rule == "required":
        return "This field is required." if f.kind not in ("file", "files") else "Choose a file or paste its URL."
    if rule == "minimum":
        return f"Must be at least {f.show(f.minimum)}."
    if rule == "maximum":
        return f"Must be at most {f.show(f.maximum)}."
    if rule == "minLength":
        return f"Must be at least {f.min_length} characters long."
    if rule == "maxLength":
        return f"Must be at most {f.max_length} characters long."
    if rule == "pattern":
        return f"Does not have the expected form ({f.pattern})."
    if rule == "enum":
        return "Choose one of: " + ", ".join(str(c) for c in f.choices) + "."
    if rule == "type" and f.kind == "integer":
        return "Enter a whole number."
    if rule == "type" and f.kind == "number":
        return "Enter a number."
    return msg[:1].upper() + msg[1:]


def form_errors(
    exc: DomainError, by_name: dict[str, Field], errors: dict[str, str], *, also: tuple[str, ...] = ()
) -> None:
    """Put a refused create's reasons next to the form fields they name (the rest at the top);
    anything but a validation error (422) is not the form's business and goes on up."""
    if isinstance(exc, InputValidationError):
        for e in exc.errors:
            if e.get("field") in by_name:
                errors.setdefault(e["field"], plain_error(by_name[e["field"]], e))
            else:
                errors.setdefault("", e.get("msg") or exc.detail)
        return
    if exc.status != 422:
        raise exc
    field = getattr(exc, "field", None)
    detail = exc.detail
    if field:  # the field is shown beside the message already
        detail = detail.replace(f"`{field}`: ", "")
        detail = detail[len(f"{field}: ") :] if detail.startswith(f"{field}: ") else detail
    errors[field if field in by_name or field in also else ""] = detail[:1].upper() + detail[1:]


@router.post("/{owner}/{name}/run")
async def run_model(request: Request, owner: str, name: str) -> Response:
    form = await check_csrf(request)
    # new predictions (and their uploads) belong to the acting account
    viewer = acting_of(request) or require_viewer(request)
    services = services_of(request)
    version_id = form.get("version") if isinstance(form.get("version"), str) else None
    ctx = await run_in_threadpool(model_context, request, owner, name, version_id or None)
    version = ctx["version"]
    if version is None:
        raise NotFound(f"{owner}/{name} has no version to run yet.")
    base = base_url(request)

    async def upload(item: UploadFile, content: bytes) -> str:
        record = await run_in_threadpool(
            services.files.create, viewer, content, filename=item.filename, content_type=item.content_type or None
        )
        return f"{base}/v1/files/{record.id}"

    fields: list[Field] = ctx["fields"]
    by_name = {f.name: f for f in fields}
    values, errors, shown = await parse_form(form, fields, upload)
    if errors:  # the form's own problems; the schema's checks on the rest are shown with them
        try:
            validate_input(version.openapi_schema, {k: v for k, v in values.items() if k not in errors})
        except InputValidationError as exc:
            for e in exc.errors:
                if e.get("field") in by_name and e["field"] not in errors:
                    errors[e["field"]] = plain_error(by_name[e["field"]], e)
    else:
        try:
            p = await run_in_threadpool(
                services.predictions.create, viewer, ctx["model"], version, {"input": values}, source="web"
            )
            return redirect(request, f"/p/{p.id}")
        except DomainError as exc:
            form_errors(exc, by_name, errors)
    shown = {**{f.name: f.default for f in fields}, **shown}
    return render(request, "model.html", status=422, values=shown, errors=errors, **ctx)


# --- trainings -------------------------------------------------------------------------------


def train_context(request: Request, owner: str, name: str, version_id: str | None) -> dict[str, Any]:
    """The model page's context with the training form's fields (from TrainingInput)."""
    ctx = model_context(request, owner, name, version_id)
    if not ctx["trainable"]:
        raise NotFound(f"{owner}/{name} has no training interface (cog.yaml `train:`).")
    ctx["fields"] = fields_for(training_view(ctx["version"].openapi_schema))
    ctx["train_tab"] = True
    return ctx


@router.get("/{owner}/{name}/train")
async def train_page(request: Request, owner: str, name: str, version: str | None = None) -> Response:
    if _reserved(owner):
        return problem(404, "The requested resource could not be found.")
    ctx = await run_in_threadpool(train_context, request, owner, name, version)
    values: dict[str, Any] = {f.name: f.default for f in ctx["fields"]}
    return render(request, "train.html", values=values, errors={}, destination="", **ctx)


@router.post("/{owner}/{name}/train")
async def train_model(request: Request, owner: str, name: str) -> Response:
    """Start a training from the form; its page shows the logs live."""
    form = await check_csrf(request)
    viewer = require_viewer(request)
    services = services_of(request)
    version_id = form.get("version") if isinstance(form.get("version"), str) else None
    ctx = await run_in_threadpool(train_context, request, owner, name, version_id or None)
    version = ctx["version"]
    base = base_url(request)

    async def upload(item: UploadFile, content: bytes) -> str:
        record = await run_in_threadpool(
            services.files.create, viewer, content, filename=item.filename, content_type=item.content_type or None
        )
        return f"{base}/v1/files/{record.id}"

    fields: list[Field] = ctx["fields"]
    by_name = {f.name: f for f in fields}
    destination = str(form.get("destination") or "").strip()
    values, errors, shown = await parse_form(form, fields, upload)
    if not errors:
        try:
            t = await run_in_threadpool(
                services.trainings.create,
                viewer,
                owner,
                name,
                version.id,
                {"input": values, "destination": destination},
                source="web",
            )
            return redirect(request, f"/t/{t.id}")
        except DomainError as exc:
            form_errors(exc, by_name, errors, also=("destination",))
    shown = {**{f.name: f.default for f in fields}, **shown}
    return render(request, "train.html", status=422, values=shown, errors=errors, destination=destination, **ctx)
