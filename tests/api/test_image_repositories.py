"""Image versions come only from this install's image repositories (deployed: this account's ECR
`cogplane/` repositories, the only ones the runners' execution role may pull): any other image is
refused at push with a clear 422, and nothing is stored."""

from __future__ import annotations

OWN = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cogplane/"
DIGEST = "@sha256:" + "ab" * 32


def _push(client, image: str, schema):
    return client.post("/v1/models/alice/img/versions", json={"image": image, "openapi_schema": schema})


def test_images_from_other_registries_are_refused_at_push(client, services, schema):
    services.catalog.image_prefixes = [OWN]
    assert client.post("/v1/models", json={"owner": "alice", "name": "img", "visibility": "private"}).status_code == 201
    for image in (
        "docker.io/library/python" + DIGEST,
        "999999999999.dkr.ecr.us-east-1.amazonaws.com/cogplane/alice/img" + DIGEST,  # another account
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/other/img" + DIGEST,  # not a model repository
    ):
        r = _push(client, image, schema)
        assert r.status_code == 422, (image, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "this install's image repositories (" + OWN in r.json()["detail"], r.json()
    assert client.get("/v1/models/alice/img/versions").json()["results"] == []
    r = _push(client, OWN + "alice/img" + DIGEST, schema)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "ab" * 32
