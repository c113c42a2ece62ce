"""Local models on disk: where an `mlx/<name>` backend's weights are, and what the machine has."""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from broke.catalog import Backend, local_backend_id
from broke.errors import BrokeError

WEIGHT_SUFFIXES = (".safetensors",)
DEMO_NAME = "broke-demo"
DEMO_BACKEND = local_backend_id(DEMO_NAME)
DEMO_ANSWER = ("Hello from broke's demo model. It runs offline; add a real model with `broke local add` "
               "or a provider key to get real answers.")


class ModelUnavailableError(BrokeError):
    """A local model that is not on this machine, or cannot be fetched."""


def hub_cache() -> Path:
    """The Hugging Face hub cache directory (HF_HUB_CACHE, HF_HOME/hub, or ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def cached_snapshot(repo: str) -> Path | None:
    """The newest cached snapshot of hub repo `org/name`, if this machine has one."""
    snapshots = hub_cache() / f"models--{repo.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    found = [p for p in snapshots.iterdir() if (p / "config.json").is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def demo_path(home: Path) -> Path:
    return home / "models" / DEMO_NAME


def model_path(backend: Backend, home: Path) -> Path:
    """Where an `mlx/…` backend's model directory is on this machine."""
    if backend.id == DEMO_BACKEND:
        return demo_path(home)
    direct = Path(backend.model).expanduser()
    if direct.is_absolute():
        if not (direct / "config.json").is_file():
            raise ModelUnavailableError(f"{direct} is not a model directory (no config.json)")
        return direct
    snapshot = cached_snapshot(backend.model)
    if snapshot is None:
        raise ModelUnavailableError(
            f"model {backend.model} is not on this machine; `broke local add {backend.model}` downloads it"
        )
    return snapshot


@dataclass(frozen=True)
class LocalModel:
    name: str
    path: str
    size_bytes: int
    quantization: str  # "4-bit", "8-bit", "bf16", …
    model_type: str
    loadable: bool
    why_not: str = ""


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def inspect_model(name: str, path: Path) -> LocalModel:
    """What a model directory holds and whether mlx-lm can load it (without loading it)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return LocalModel(name, str(path), _size(path), "?", "?", False, "no readable config.json")
    quant = config.get("quantization") or config.get("quantization_config") or {}
    bits = quant.get("bits") if isinstance(quant, dict) else None
    quantization = f"{bits}-bit" if bits else str(config.get("torch_dtype") or config.get("dtype") or "float")
    model_type = str(config.get("model_type", "?"))
    why = ""
    if not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir()):
        why = "no .safetensors weights"
    elif not ((path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file()):
        why = "no tokenizer"
    elif importlib.util.find_spec(f"mlx_lm.models.{model_type}") is None:
        why = f"mlx-lm has no '{model_type}' architecture"
    return LocalModel(name, str(path), _size(path), quantization, model_type, not why, why)


def discover(extra_dirs: list[Path]) -> list[LocalModel]:
    """Models in the hub cache and in `extra_dirs` (each a model directory or a folder of them)."""
    found: list[LocalModel] = []
    cache = hub_cache()
    if cache.is_dir():
        for entry in sorted(cache.glob("models--*")):
            repo = entry.name[len("models--"):].replace("--", "/")
            snapshot = cached_snapshot(repo)
            if snapshot:
                found.append(inspect_model(repo, snapshot))
    for directory in extra_dirs:
        candidates = [directory] if (directory / "config.json").is_file() else \
            sorted(p for p in directory.iterdir() if (p / "config.json").is_file()) if directory.is_dir() else []
        found += [inspect_model(p.name, p) for p in candidates]
    return found


def download(repo: str) -> Path:
    """Fetch hub repo `org/name` into the hub cache; a clear error when the hub cannot be reached."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with mlx-lm
        raise ModelUnavailableError("huggingface_hub is not installed; run ./install.sh") from None
    try:
        return Path(snapshot_download(repo, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt",
                                                            "*.jinja", "*.tiktoken"]))
    except (LocalEntryNotFoundError, OSError, HfHubHTTPError) as exc:
        raise ModelUnavailableError(
            f"cannot download {repo} ({type(exc).__name__}): the hub is not reachable from here; "
            "copy the model directory to this machine and `broke local add PATH`"
        ) from None

