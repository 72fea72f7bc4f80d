"""A small OCI distribution (registry HTTP API v2) client: reads an image's config labels without
Docker, for `cogplane push --image` (`cog build` writes the schema into `run.cog.openapi_schema`).

    GET /v2/<repo>/manifests/<ref>   (Accept: OCI index/manifest, Docker manifest list/manifest)
      an index / manifest list   -> pick linux/amd64 -> GET its manifest
    GET /v2/<repo>/blobs/<config digest>   -> the image config, whose config.Labels we read

Auth: anonymous first; a 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
is answered with a token from the realm (with basic credentials if we have some); `Basic` is
answered with the credentials. For ECR hosts (`<acct>.dkr.ecr.<region>.amazonaws.com`) the
credentials come from `ecr.get_authorization_token` (boto3) unless given.

The version id of an image version is the hex of the digest of the image reference's manifest
(the tag's manifest list or manifest: what `docker pull IMAGE@sha256:<id>` pulls).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
LISTS = (OCI_INDEX, DOCKER_LIST)

SCHEMA_LABEL = "run.cog.openapi_schema"
COG_VERSION_LABEL = "run.cog.version"
CONFIG_LABELS = ("run.cog.config", "org.cogmodel.config")  # cog.yaml as JSON, decorator concurrency folded in
DOCKER_HUB = "registry-1.docker.io"
_ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RegistryError(Exception):
    """The image cannot be read (not found, not authorized, not a cog image, bad answer)."""


@dataclass
class ImageRef:
    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    scheme: str = "https"

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """host/repository, as it appears in an image reference."""
        return f"{self.host}/{self.repository}"

    def pinned(self, digest: str) -> str:
        return f"{self.name}@{digest}"


def parse_image(image: str) -> ImageRef:
    """`[host[:port]/]repo[:tag][@sha256:...]`; docker.io names get `library/` as Docker does.
    `http://host:port/repo:tag` forces plain HTTP (tests, local registries)."""
    scheme = "https"
    for prefix in ("http://", "https://"):
        if image.startswith(prefix):
            scheme, image = prefix[:-3], image[len(prefix) :]
    digest = None
    if "@" in image:
        image, _, digest = image.partition("@")
        if not _DIGEST.match(digest):
            raise RegistryError(f"Not a sha256 digest: {digest!r}")
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, image
        if "/" not in path:
            path = f"library/{path}"
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
    if not path:
        raise RegistryError(f"Not an image reference: {image!r}")
    if host == "docker.io":
        host = DOCKER_HUB
    return ImageRef(host=host, repository=path, tag=tag, digest=digest, scheme=scheme)


def ecr_registry(host: str) -> tuple[str, str] | None:
    """(account id, region) of an ECR registry host, else None."""
    match = _ECR_HOST.match(host)
    return (match.group(1), match.group(2)) if match else None


def ecr_credentials(host: str, ecr_client: Any = None) -> tuple[str, str]:
    """Basic credentials for an ECR registry from `ecr.get_authorization_token` (valid 12 h)."""
    account, region = ecr_registry(host) or ("", "")
    if ecr_client is None:
        from cogplane.adapters.aws.clients import client

        ecr_client = client("ecr", region_name=region or None)
    data = ecr_client.get_authorization_token(**({"registryIds": [account]} if account else {}))
    token = data["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    return user, password


@dataclass
class ImageInfo:
    image: str  # host/repo@sha256:... (the manifest's digest)
    digest: str  # sha256:...
    config: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def version_id(self) -> str:
        return self.digest.split(":", 1)[1]

    @property
    def cog_config(self) -> dict[str, Any]:
        """The image's effective cog.yaml (`run.cog.config`; {} if absent or unreadable). Its
        `concurrency.max` includes `@concurrent(max=N)`: cog folds the decorator in at build time."""
        for label in CONFIG_LABELS:
            try:
                value = json.loads(self.labels.get(label) or "null")
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        return {}

    @property
    def openapi_schema(self) -> dict[str, Any]:
        text = self.labels.get(SCHEMA_LABEL)
        if not text:
            raise RegistryError(
                f"{self.image} has no {SCHEMA_LABEL} label: build it with `cog build` (cog writes the "
                "schema into that label)."
            )
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise RegistryError(f"The {SCHEMA_LABEL} label of {self.image} is not JSON: {exc}") from exc
        if not isinstance(schema, dict):
            raise RegistryError(f"The {SCHEMA_LABEL} label of {self.image} is not a JSON object.")
        return schema

    @property
    def cog_version(self) -> str | None:
        return self.labels.get(COG_VERSION_LABEL)


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class RegistryClient:
    """Reads manifests and blobs of one registry host; `auth` = (user, password) if needed."""

    def __init__(
        self,
        ref: ImageRef,
        *,
        auth: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        platform: tuple[str, str] = ("linux", "amd64"),
    ) -> None:
        self.ref = ref
        self.auth = auth
        self.platform = platform
        self.http = httpx.Client(transport=transport, timeout=timeout, follow_redirects=True)
        self.base = f"{ref.scheme}://{ref.host}/v2/{ref.repository}"
        self._authorization: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- HTTP with the registry's auth dance ----------------------------------------------
    def _get(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        headers = dict(headers or {})
        if self._authorization:
            headers["Authorization"] = self._authorization
        response = self.http.get(url, headers=headers)
        if response.status_code == 401 and "www-authenticate" in response.headers:
            self._authorization = self._authorize(response.headers["www-authenticate"])
            headers["Authorization"] = self._authorization
            response = self.http.get(url, headers=headers)
        if response.status_code in (401, 403):
            raise RegistryError(
                f"Not authorized to read {self.ref.name} ({response.status_code}); "
                "log in to the registry or check the credentials."
            )
        if response.status_code == 404:
            raise RegistryError(f"{self.ref.name}:{self.ref.reference} was not found in the registry.")
        if response.status_code != 200:
            raise RegistryError(f"The registry answered {response.status_code} for {url}: {response.text[:300]}")
        return response

    def _basic(self) -> str:
        if not self.auth:
            raise RegistryError(f"{self.ref.host} asks for credentials and none were given.")
        return "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()

    def _authorize(self, header: str) -> str:
        scheme, params = _challenge(header)
        if scheme == "basic":
            return self._basic()
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"Unsupported registry auth challenge: {header}")
        query: dict[str, str] = {k: params[k] for k in ("service", "scope") if k in params}
        query.setdefault("scope", f"repository:{self.ref.repository}:pull")
        headers = {"Authorization": self._basic()} if self.auth else {}
        response = self.http.get(params["realm"], params=query, headers=headers)
        if response.status_code != 200:
            raise RegistryError(f"The registry's token service answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError("The registry's token service returned no token.")
        return f"Bearer {token}"

    # --- the image ------------------------------------------------------------------------
    def manifest(self, reference: str) -> tuple[dict[str, Any], str, str]:
        """(manifest, media type, digest) of a tag or digest."""
        response = self._get(f"{self.base}/manifests/{reference}", {"Accept": ACCEPT})
        raw = response.content
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        said = response.headers.get("docker-content-digest")
        if said and said != digest and said.startswith("sha256:"):
            raise RegistryError(f"The manifest's digest {digest} does not match the registry's {said}.")
        if reference.startswith("sha256:") and reference != digest:
            raise RegistryError(f"The manifest of {reference} has digest {digest}.")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"The manifest of {reference} is not JSON.") from exc
        media = (response.headers.get("content-type") or "").split(";")[0].strip() or body.get("mediaType", "")
        return body, body.get("mediaType") or media, digest

    def inspect(self) -> ImageInfo:
        """The image's manifest digest and config (labels) for linux/amd64."""
        body, media, digest = self.manifest(self.ref.reference)
        if media in LISTS or "manifests" in body:
            os_name, arch = self.platform
            chosen = [
                m
                for m in body.get("manifests", [])
                if (m.get("platform") or {}).get("os") == os_name
                and (m.get("platform") or {}).get("architecture") == arch
            ]
            if not chosen:
                raise RegistryError(f"{self.ref.name}:{self.ref.reference} has no {os_name}/{arch} image.")
            body, media, _ = self.manifest(chosen[0]["digest"])
        config_digest = (body.get("config") or {}).get("digest")
        if not config_digest:
            raise RegistryError(f"The manifest of {self.ref.name}:{self.ref.reference} has no config.")
        blob = self._get(f"{self.base}/blobs/{config_digest}").content
        if "sha256:" + hashlib.sha256(blob).hexdigest() != config_digest:
            raise RegistryError(f"The config blob does not match its digest {config_digest}.")
        config = json.loads(blob)
        labels = (config.get("config") or {}).get("Labels") or {}
        return ImageInfo(image=self.ref.pinned(digest), digest=digest, config=config, labels=dict(labels))


def inspect_image(
    image: str,
    *,
    auth: tuple[str, str] | None = None,
    ecr_client: Any = None,
    transport: httpx.BaseTransport | None = None,
) -> ImageInfo:
    """Read an image's manifest digest and labels (ECR credentials fetched when the host is ECR)."""
    ref = parse_image(image)
    if auth is None and ecr_registry(ref.host):
        auth = ecr_credentials(ref.host, ecr_client)
    with RegistryClient(ref, auth=auth, transport=transport) as client:
        return client.inspect()
