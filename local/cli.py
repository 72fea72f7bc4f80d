"""`cogplane` command line: push models, run the single-machine stack."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from cogplane.bundle import BundleError
from cogplane.schema import SchemaError
from cogplane.settings import ClientSettings


def _err(message: str) -> int:
    print(f"cogplane: {message}", file=sys.stderr)
    return 1


def _settings(args: argparse.Namespace) -> ClientSettings:
    """The settings main() read once (a test may call a command with its own)."""
    found = getattr(args, "settings", None)
    return found if found is not None else ClientSettings()


def _token(settings: ClientSettings) -> str | None:
    if settings.token:
        return settings.token
    path = settings.home / "token"
    return path.read_text().strip() if path.is_file() else None


def _multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes) -> tuple[str, list[bytes]]:
    boundary = "cogplane-" + secrets.token_hex(12)
    head = b""
    for name, value in fields.items():
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n').encode()
        head += value.encode() + b"\r\n"
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: application/gzip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", [head, data, tail]


def _progress_chunks(parts: list[bytes], label: str, chunk: int = 256 * 1024) -> Iterator[bytes]:
    total = sum(len(p) for p in parts)
    sent = 0
    tty = sys.stderr.isatty()
    for part in parts:
        for i in range(0, len(part), chunk):
            piece = part[i : i + chunk]
            sent += len(piece)
            yield piece
            if tty:
                print(
                    f"\r{label}: {sent * 100 // max(total, 1):3d}% of {total / 1e6:.1f} MB",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"\r{label}: 100% of {total / 1e6:.1f} MB", file=sys.stderr, flush=True)


def push(args: argparse.Namespace) -> int:
    from cogplane.push import prepare
    from cogplane.tls import ssl_context

    settings = _settings(args)
    home = settings.home
    url, _ = _api(settings)
    token = _token(settings)
    if not token:
        return _err(f"no token: set COGPLANE_TOKEN or run `make up` (it writes {home}/token)")
    owner, _, name = args.model.partition("/")
    if not owner or not name:
        return _err("the model must be given as OWNER/NAME")
    if getattr(args, "image", None):
        return push_image(args, url=url, token=token, home=home, ca=settings.ca)
    if not args.dir:
        return _err("give the model folder, or --image IMAGE for an image built by `cog build`")
    model_dir = Path(args.dir)
    if not model_dir.is_dir():
        return _err(f"{model_dir} is not a folder")
    print(f"Inspecting {model_dir} ...", file=sys.stderr)
    try:
        prepared = prepare(
            model_dir,
            env_cache=settings.env_cache or home / "envs",
            installer=settings.installer,
            on_log=lambda line: print(line, file=sys.stderr),
        )
    except (BundleError, SchemaError) as exc:
        return _err(f"cannot push {model_dir}: {exc}")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=url, headers=headers, timeout=httpx.Timeout(30, write=None), verify=ssl_context(home, settings.ca)
    ) as client:
        try:
            problem = _ensure_model(client, args, owner, name)
            if problem:
                return _err(problem)
            try:  # straight to the store (deployed: S3; API Gateway would refuse over 10 MB)
                upload_id = upload_bytes(client, "bundle", prepared.bundle, "bundle.tar.gz", verify=ssl_context(home))
            except UploadError as exc:
                return _err(f"upload failed: {exc}")
            if upload_id is not None:
                r = client.post(
                    f"/v1/models/{owner}/{name}/versions",
                    json={
                        "upload": upload_id,
                        "schema": prepared.schema,
                        "config": prepared.config,
                        "cog_version": "0.23.1",
                    },
                    timeout=httpx.Timeout(120),
                )
            else:  # a server without /v1/uploads: the bundle in the request itself
                content_type, parts = _multipart(
                    {
                        "schema": json.dumps(prepared.schema),
                        "config": json.dumps(prepared.config),
                        "cog_version": "0.23.1",
                    },
                    "bundle",
                    "bundle.tar.gz",
                    prepared.bundle,
                )
                r = client.post(
                    f"/v1/models/{owner}/{name}/versions",
                    headers={"Content-Type": content_type},
                    content=_progress_chunks(parts, "Uploading"),
                )
        except httpx.HTTPError as exc:
            return _err(f"cannot reach {url}: {exc}")
    return _pushed(r, f"Pushed {owner}/{name}", "upload failed")


class UploadError(Exception):
    pass


def upload_bytes(
    client: httpx.Client, purpose: str, data: bytes, filename: str, *, verify: Any = True, label: str = "Uploading"
) -> str | None:
    """Send bytes straight to the blob store (`POST /v1/uploads`, then the presigned POST or
    signed PUT it returns, with no token): the upload's id, or None if the server has no uploads."""
    r = client.post("/v1/uploads", json={"purpose": purpose, "size": len(data)})
    if r.status_code in (404, 405):
        return None
    if r.status_code != 201:
        raise UploadError(_detail(r))
    body = r.json()
    target = body["upload"]
    if target["method"] == "POST":  # an S3 presigned POST: the policy's fields, then the file
        content_type, parts = _multipart(dict(target.get("fields") or {}), "file", filename, data)
    else:
        content_type, parts = "application/octet-stream", [data]
    headers = {"Content-Type": content_type, "Content-Length": str(sum(len(p) for p in parts))}
    with httpx.Client(timeout=httpx.Timeout(60, write=None), verify=verify) as store:  # no Authorization
        sent = store.request(target["method"], target["url"], headers=headers, content=_progress_chunks(parts, label))
    if sent.status_code >= 300:
        raise UploadError(f"the store answered {sent.status_code}: {sent.text[:300]}")
    return body["id"]


def _detail(r: httpx.Response) -> str:
    try:
        return f"{r.status_code} {r.json()['detail']}"
    except (ValueError, KeyError, TypeError):
        return f"{r.status_code} {r.text[:300]}"


def _pushed(r: httpx.Response, done: str, failed: str) -> int:
    """Report a version upload: 201 is a new version, 200 the existing one; its id on stdout."""
    if r.status_code not in (200, 201):
        try:  # a problem+json: its detail is the sentence for the user
            detail = r.json()["detail"]
        except (ValueError, KeyError, TypeError):
            detail = r.text
        return _err(f"{failed}: {r.status_code} {detail}")
    state = "new version" if r.status_code == 201 else "unchanged, existing version"
    print(f"{done} ({state})", file=sys.stderr)
    print(r.json()["id"])
    return 0


def _ensure_model(client: httpx.Client, args: argparse.Namespace, owner: str, name: str) -> str | None:
    """Create OWNER/NAME if missing; an error message, or None."""
    found = client.get(f"/v1/models/{owner}/{name}")
    if found.status_code == 404:
        created = client.post(
            "/v1/models",
            json={
                "owner": owner,
                "name": name,
                "visibility": "public" if args.public else "private",
                "hardware": args.hardware,
                "description": args.description,
            },
        )
        if created.status_code != 201:
            return f"could not create {owner}/{name}: {created.text}"
        print(f"Created model {owner}/{name} ({'public' if args.public else 'private'})", file=sys.stderr)
    elif found.status_code != 200:
        return f"could not read {owner}/{name}: {found.status_code} {found.text}"
    return None


def push_image(
    args: argparse.Namespace,
    *,
    url: str,
    token: str,
    home: Path,
    ca: str = "",
    transport: httpx.BaseTransport | None = None,
) -> int:
    """`cogplane push --image IMAGE OWNER/NAME`: read the schema from the image's labels through
    the registry API (no Docker), then register IMAGE@digest as a version of the model."""
    from cogplane.registry import RegistryError, inspect_image
    from cogplane.tls import ssl_context

    owner, _, name = args.model.partition("/")
    print(f"Reading {args.image} from its registry ...", file=sys.stderr)
    try:
        info = inspect_image(args.image, transport=getattr(args, "registry_transport", None))
        schema = info.openapi_schema
    except RegistryError as exc:
        return _err(f"cannot register {args.image}: {exc}")
    except httpx.HTTPError as exc:
        return _err(f"cannot reach the registry of {args.image}: {exc}")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=url, headers=headers, timeout=30, verify=ssl_context(home, ca), transport=transport
    ) as client:
        try:
            problem = _ensure_model(client, args, owner, name)
            if problem:
                return _err(problem)
            r = client.post(
                f"/v1/models/{owner}/{name}/versions",
                json={
                    "image": info.image,
                    "openapi_schema": schema,
                    "cog_version": info.cog_version,
                    "config": info.cog_config,
                },
            )
        except httpx.HTTPError as exc:
            return _err(f"cannot reach {url}: {exc}")
    return _pushed(r, f"Registered {info.image} as {owner}/{name}", "registration failed")


def _api(settings: ClientSettings) -> tuple[str, dict]:
    """The API's URL (COGPLANE_URL, else `make up`'s: HTTPS with its local CA home/tls/ca.pem
    unless COGPLANE_TLS=0) and httpx options (that CA)."""
    from cogplane.tls import client_ca, ssl_context

    https = settings.tls and client_ca(settings.home, settings.ca) is not None
    url = (settings.url or f"{'https' if https else 'http'}://127.0.0.1:8000").rstrip("/")
    return url, {"verify": ssl_context(settings.home, settings.ca)}


ADMIN_ROUTES = {  # command -> (method, path template, body/query builder)
    ("users", "create"): ("POST", "/v1/admin/users", lambda a: {"username": a.name}),
    ("users", "list"): ("GET", "/v1/admin/users", lambda a: None),
    ("orgs", "create"): ("POST", "/v1/admin/orgs", lambda a: {"name": a.name, "owner": a.owner}),
    ("orgs", "add"): ("POST", "/v1/admin/orgs/{org}/members", lambda a: {"username": a.user, "role": a.role}),
    ("orgs", "remove"): ("DELETE", "/v1/admin/orgs/{org}/members/{user}", lambda a: None),
    ("orgs", "members"): ("GET", "/v1/admin/orgs/{org}/members", lambda a: None),
    ("tokens", "create"): ("POST", "/v1/admin/tokens", lambda a: {"account": a.account, "name": a.name}),
    ("tokens", "list"): ("GET", "/v1/admin/tokens?account={account}", lambda a: None),
    ("tokens", "revoke"): ("DELETE", "/v1/admin/tokens/{token_id}", lambda a: None),
    ("usage", None): ("GET", "/v1/admin/usage", lambda a: None),
}


def _admin_text(args: argparse.Namespace, data: dict) -> str:
    """Plain-text output of an admin command (--json prints the API's object instead)."""
    if "token" in data:  # a new user or token: the token is shown this once
        who = data.get("username") or data.get("account")
        return f"{who}: token {data['token']} (id {data['token_id']}); it is shown only this once"
    if "results" in data and args.group == "usage":
        lines = [
            f"{r['day']}  {r['hardware']:<10} {r['predict_time']:>12.3f} s  {r['predictions']:>6} predictions"
            + (f"  {r['cost']:.4f}" if "cost" in r else "")
            for r in data["results"]
        ]
        return "\n".join(lines + [f"total {data['total']['predict_time']:.3f} s"])
    if "results" in data:
        rows = []
        for r in data["results"]:
            if "orgs" in r or r.get("type") == "organization":
                orgs = ", ".join(f"{o['org']} ({o['role']})" for o in r.get("orgs", []))
                rows.append(f"{r['username']:<20} {r['type']:<13} {'admin' if r.get('admin') else '':<6} {orgs}")
            elif "role" in r:
                rows.append(f"{r['username']:<20} {r['role']}")
            else:
                rows.append(
                    f"{r['id']:<26} {r['name']:<20} created {r['created_at']}  last used "
                    f"{r.get('last_used_at') or 'never'}"
                )
        return "\n".join(rows)
    return json.dumps(data)


def admin(args: argparse.Namespace) -> int:
    """`cogplane admin ...`: a client of /v1/admin/ with an admin token (COGPLANE_TOKEN, or the
    token `make up` wrote), against COGPLANE_URL (make up's API by default, or a deployed one)."""
    settings = _settings(args)
    token = settings.admin_token or _token(settings)
    if not token:
        return _err(
            f"no token: set COGPLANE_TOKEN to an admin token or run `make up` (it writes {settings.home}/token)"
        )
    url, options = _api(settings)
    method, path, build = ADMIN_ROUTES[(args.group, getattr(args, "action", None))]
    values = {k: v for k, v in vars(args).items() if isinstance(v, str)}
    path = path.format(**{k: quote(v, safe="") for k, v in values.items()})
    params = None
    if args.group == "usage":
        params = {k: v for k, v in (("account", args.account), ("since", args.since), ("until", args.until)) if v}
    body = build(args)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30, **options) as c:
            r = c.request(method, path, json=body, params=params)
    except httpx.HTTPError as exc:
        return _err(f"cannot reach {url}: {exc}")
    try:
        data = r.json()
    except ValueError:
        data = {"status": r.status_code, "detail": r.text}
    if r.status_code >= 400:
        if args.json:
            print(json.dumps({"error": data, "status": r.status_code}))
        return _err(f"{r.status_code}: {data.get('detail') or data}" if isinstance(data, dict) else r.text)
    print(json.dumps(data) if args.json else _admin_text(args, data))
    return 0


def _admin_parser(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("admin", help="administer users, organizations, tokens and usage (an admin token)")
    groups = a.add_subparsers(dest="group", required=True)

    def cmd(group: argparse._SubParsersAction, action: str, help_text: str) -> argparse.ArgumentParser:
        p = group.add_parser(action, help=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        return p

    users = groups.add_parser("users", help="user accounts").add_subparsers(dest="action", required=True)
    cmd(users, "create", "create a user (prints their first token)").add_argument("name")
    cmd(users, "list", "list every account")
    orgs = groups.add_parser("orgs", help="organizations").add_subparsers(dest="action", required=True)
    p = cmd(orgs, "create", "create an organization owned by a user")
    p.add_argument("name")
    p.add_argument("--owner", required=True)
    p = cmd(orgs, "add", "add a user to an organization (or change their role)")
    p.add_argument("org")
    p.add_argument("user")
    p.add_argument("--role", choices=["owner", "member"], default="member")
    p = cmd(orgs, "remove", "remove a user from an organization")
    p.add_argument("org")
    p.add_argument("user")
    cmd(orgs, "members", "list an organization's members").add_argument("org")
    tokens = groups.add_parser("tokens", help="API tokens").add_subparsers(dest="action", required=True)
    p = cmd(tokens, "create", "create a token of an account (prints it)")
    p.add_argument("account")
    p.add_argument("--name", default=None)
    cmd(tokens, "list", "list an account's tokens").add_argument("account")
    cmd(tokens, "revoke", "revoke a token by its id").add_argument("token_id")
    u = groups.add_parser("usage", help="billable predict time of an account, by day and hardware")
    u.add_argument("account")
    u.add_argument("--since", default=None, help="YYYY-MM-DD")
    u.add_argument("--until", default=None, help="YYYY-MM-DD")
    u.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(func=admin)


def models_set(args: argparse.Namespace, *, transport: httpx.BaseTransport | None = None) -> int:
    """`cogplane models set OWNER/NAME --safety-checker web|all|off`: change a model's settings."""
    settings = _settings(args)
    url, options = _api(settings)
    token = _token(settings)
    if not token:
        return _err(f"no token: set COGPLANE_TOKEN or run `make up` (it writes {settings.home}/token)")
    owner, _, name = args.model.partition("/")
    if not owner or not name:
        return _err("the model must be given as OWNER/NAME")
    changes = {}
    if args.safety_checker is not None:
        changes["safety_checker"] = args.safety_checker
    if not changes:
        return _err("nothing to change: give --safety-checker web|all|off")
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30, transport=transport, **options
    ) as client:
        try:
            r = client.patch(f"/v1/models/{owner}/{name}", json=changes)
        except httpx.HTTPError as exc:
            return _err(f"cannot reach {url}: {exc}")
    if r.status_code != 200:
        return _err(f"could not change {owner}/{name}: {r.status_code} {r.text}")
    model = r.json()
    print(f"{owner}/{name}: safety checker {model.get('safety_checker')}")
    return 0


def up(args: argparse.Namespace) -> int:
    from local.stack import run

    try:
        return run()
    except KeyboardInterrupt:  # Ctrl-C while starting (before any runner): nothing to drain
        print("\ncogplane: stopped while starting", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cogplane", description="A self-hosted, Replicate-compatible platform.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("push", help="push a Cog model folder as a new version (no Docker needed)")
    p.add_argument("dir", nargs="?", help="the model folder (with cog.yaml and predict.py)")
    p.add_argument("model", help="OWNER/NAME; created if missing")
    p.add_argument(
        "--image",
        default=None,
        help="register an image built by `cog build` and pushed to a registry (e.g. the "
        "model's ECR repository) instead of a folder; the schema is read from its labels",
    )
    p.add_argument("--public", action="store_true", help="make a newly created model public")
    p.add_argument("--hardware", default="cpu", help="hardware SKU for a newly created model (default cpu)")
    p.add_argument("--description", default=None, help="description for a newly created model")
    p.set_defaults(func=push)
    m = sub.add_parser("models", help="change a model's settings")
    msub = m.add_subparsers(dest="models_command", required=True)
    ms = msub.add_parser("set", help="change settings of a model you own")
    ms.add_argument("model", help="OWNER/NAME")
    ms.add_argument(
        "--safety-checker",
        choices=("web", "all", "off"),
        default=None,
        help="check image outputs with the platform's safety checker: web = predictions "
        "created in the web UI, all = API ones too (unless the request sets "
        "disable_safety_checker), off = none (the default)",
    )
    ms.set_defaults(func=models_set)
    u = sub.add_parser("up", help="run the single-machine stack (API, runners, pumps) in the foreground")
    u.set_defaults(func=up)
    _admin_parser(sub)
    args = parser.parse_args(argv)
    if args.func is not up:  # `up` reads the platform's settings itself (local/stack.py)
        from pydantic import ValidationError

        try:
            args.settings = ClientSettings()
        except ValidationError as exc:
            from local.stack import setting_problems

            return _err(f"bad setting: {setting_problems(exc)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
