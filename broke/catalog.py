"""The catalog: providers, known backends, slot families and client aliases (data in catalog.toml)."""
from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from broke.errors import InvalidInputError, NotFoundError

CATALOG_FILE = Path(__file__).with_name("catalog.toml")


@dataclass(frozen=True)
class Provider:
    name: str
    label: str
    key_env: str  # first key's variable; "" = no key needed
    litellm_prefix: str
    local: bool = False
    needs_api_base: bool = False
    #: The client APIs this provider speaks itself ("chat", "responses", "messages"): the front proxy
    #: forwards those unchanged; any other API goes through LiteLLM's translation.
    native: tuple[str, ...] = ()
    api_base: str = ""  # where native requests go when a backend names no api_base of its own


@dataclass(frozen=True)
class Backend:
    """A concrete model of a provider: `provider/model`."""

    id: str
    provider: str
    model: str
    pinned: bool
    api_base: str | None = None
    key_env: str | None = None  # overrides the provider's key variable
    custom: bool = False

    @property
    def floating(self) -> bool:
        return not self.pinned


@dataclass(frozen=True)
class SlotFamily:
    name: str
    description: str
    slots: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    providers: dict[str, Provider]
    backends: dict[str, Backend]
    families: tuple[SlotFamily, ...]
    aliases: tuple[tuple[str, str], ...]  # (pattern, slot)
    default_slots: dict[str, str]
    #: Codex lane -> the model name Codex knows it by
    codex_names: dict[str, str]

    @property
    def slots(self) -> tuple[str, ...]:
        """Every slot, family by family."""
        return tuple(slot for family in self.families for slot in family.slots)

    def family_of(self, slot: str) -> str:
        return next(f.name for f in self.families if slot in f.slots)

    def slot_for_model(self, requested: str) -> str | None:
        """The slot a client's model name maps to: a slot name itself, else the first matching alias."""
        if requested in self.slots:
            return requested
        for pattern, slot in self.aliases:
            if fnmatch.fnmatchcase(requested, pattern):
                return slot
        return None

    def require_slot(self, requested: str) -> str:
        """Like `slot_for_model`, but an unknown name is an error that lists the slots."""
        slot = self.slot_for_model(requested)
        if slot is None:
            raise NotFoundError(f"unknown slot '{requested}'; slots are: {', '.join(self.slots)}")
        return slot

    def provider(self, name: str) -> Provider:
        try:
            return self.providers[name]
        except KeyError:
            raise NotFoundError(
                f"unknown provider '{name}'; providers are: {', '.join(self.providers)}"
            ) from None


LOCAL_PREFIX = "mlx/"


def local_backend_id(model: str) -> str:
    """`mlx/NAME` for a local model given as NAME or already as its backend id."""
    return model if model.startswith(LOCAL_PREFIX) else LOCAL_PREFIX + model


def local_model_name(backend_id: str) -> str | None:
    """NAME of backend `mlx/NAME`; None for other backends."""
    return backend_id[len(LOCAL_PREFIX):] if backend_id.startswith(LOCAL_PREFIX) else None


def split_backend_id(backend_id: str) -> tuple[str, str]:
    """`provider/model` -> (provider, model); anything else is an input error."""
    provider, sep, model = backend_id.partition("/")
    if not sep or not provider or not model:
        raise InvalidInputError(f"backend id '{backend_id}' must look like PROVIDER/MODEL")
    return provider, model


@cache
def load_catalog() -> Catalog:
    """Load catalog.toml once per process."""
    with CATALOG_FILE.open("rb") as fh:
        data = tomllib.load(fh)
    providers = {
        name: Provider(name=name, **{**fields, "native": tuple(fields.get("native", ()))})
        for name, fields in data["providers"].items()
    }
    backends: dict[str, Backend] = {}
    for entry in data["backends"]:
        provider, model = split_backend_id(entry["id"])
        backends[entry["id"]] = Backend(
            id=entry["id"], provider=provider, model=model, pinned=entry["pinned"]
        )
    families = tuple(
        SlotFamily(name=name, description=f["description"], slots=tuple(f["slots"]))
        for name, f in data["slot_families"].items()
    )
    aliases = tuple((pattern, a["slot"]) for a in data["aliases"]
                    for pattern in a.get("patterns", [a.get("pattern")]))
    return Catalog(providers, backends, families, aliases, dict(data["default_slots"]), dict(data["codex_names"]))
