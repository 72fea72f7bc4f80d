"""First-run set-up of the single-machine stack: accounts, the user's token, the examples."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cogplane.bundle import BundleError
from cogplane.domain.errors import Conflict
from cogplane.schema import SchemaError
from cogplane.wiring import Services

log = logging.getLogger("cogplane.bootstrap")


@dataclass
class PushResult:
    model: str
    version_id: str | None
    error: str | None = None


def ensure_token(services: Services, username: str, home: Path, given: str | None) -> str:
    """COGPLANE_TOKEN if set; else the token kept in $COGPLANE_HOME/token; else a new one."""
    path = home / "token"
    token = given or (path.read_text().strip() if path.is_file() else None)
    token = services.accounts.issue_token(username, token)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def summary(markdown: str, limit: int = 200) -> str | None:
    """The first paragraph of a README as plain text (links, emphasis and code marks removed),
    cut at a sentence end near `limit` characters."""
    import re

    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", markdown) if p.strip()]
    text = next((p for p in paragraphs if not p.startswith(("#", "```", "|", "-", "*", ">"))), None)
    if text is None:
        return None
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # [label](url) -> label
    text = text.replace("**", "").replace("`", "")
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(". ", 0, limit)
    return text[: cut + 1] if cut > 40 else text[: limit - 1].rstrip() + "…"


PLATFORM_MODELS = Path(__file__).resolve().parents[1] / "platform_models"
PLATFORM_OWNER = "cogplane"  # the platform's own models (cogplane/safety-checker), private to it


def push_platform_models(services: Services) -> list[PushResult]:
    """The platform's own Cog models (the safety checker), served by the runners like any model."""
    return push_examples(services, PLATFORM_MODELS, owner=PLATFORM_OWNER, visibility="private",
                         account_name="cogplane")


def push_examples(services: Services, examples_dir: Path, *, owner: str = "examples", visibility: str = "public",
                  account_name: str = "Examples") -> list[PushResult]:
    """Push every folder of examples/ as a model owner/<folder> (unchanged ones are skipped)."""
    from cogplane.push import prepare

    account = services.accounts.ensure_account(owner, type="organization", name=account_name)
    results = []
    for folder in sorted(p for p in Path(examples_dir).iterdir() if (p / "cog.yaml").is_file()):
        name = folder.name
        try:
            prepared = prepare(folder, with_schema=False)
            if services.state.get_version(owner, name, prepared.version_id) is not None:
                results.append(PushResult(f"{owner}/{name}", prepared.version_id))
                continue
            prepared = prepare(folder)
            readme = folder / "README.md"
            description = summary(readme.read_text()) if readme.is_file() else None
            try:
                services.catalog.create_model(account, {"owner": owner, "name": name, "visibility": visibility,
                                                        "description": description})
            except Conflict:
                pass
            version, _ = services.catalog.push_version(
                account, owner, name, bundle=prepared.bundle, schema=prepared.schema or {},
                config=prepared.config, cog_version="0.23.1")
            results.append(PushResult(f"{owner}/{name}", version.id))
        except (BundleError, SchemaError) as exc:
            log.warning("could not push example %s: %s", name, exc)
            results.append(PushResult(f"{owner}/{name}", None, str(exc)))
    return results
