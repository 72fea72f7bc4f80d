"""Collections: groups of models defined by the install (not by users).

`COLLECTIONS` is the install's list. A collection names its models explicitly (`models`) and/or
takes every public model of an owner (`owner`); `examples` holds the examples/* models that
`make up` pushes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cogplane.domain.entities import Model
from cogplane.domain.errors import NotFound
from cogplane.ports import StateStore


@dataclass(frozen=True)
class Collection:
    slug: str
    name: str
    description: str
    full_description: str = ""
    owner: str | None = None  # every public model of this owner
    models: tuple[str, ...] = field(default_factory=tuple)  # "owner/name", in this order


COLLECTIONS: tuple[Collection, ...] = (
    Collection(
        slug="examples",
        name="Examples",
        description="The example models that come with cogplane.",
        full_description="Real Cog models pushed by `make up` from the examples/ folder: text, images, "
        "speech synthesis, transcription (streamed) and embeddings.",
        owner="examples",
    ),
)


class CollectionService:
    def __init__(self, state: StateStore, collections: tuple[Collection, ...] = COLLECTIONS) -> None:
        self.state = state
        self.collections = {c.slug: c for c in collections}

    def list_collections(self) -> list[Collection]:
        return list(self.collections.values())

    def get(self, slug: str) -> Collection:
        found = self.collections.get(slug)
        if found is None:
            raise NotFound(f"Collection {slug} not found.")
        return found

    def models(self, collection: Collection, *, limit: int = 1000) -> list[Model]:
        """Its public models: the named ones first, then the owner's (by name)."""
        found: list[Model] = []
        seen: set[str] = set()
        for ref in collection.models:
            owner, _, name = ref.partition("/")
            model = self.state.get_model(owner, name)
            if model is not None and model.visibility == "public" and ref not in seen:
                found.append(model)
                seen.add(ref)
        if collection.owner:
            owned: list[Model] = []
            cursor = None
            for _ in range(20):  # bounded scan of public models
                page = self.state.list_models(sort_by="model_created_at", cursor=cursor, limit=100)
                owned += [m for m in page.items if m.owner == collection.owner and m.full_name not in seen]
                cursor = page.next_cursor
                if not cursor:
                    break
            found += sorted(owned, key=lambda m: m.name)
        return found[:limit]
