"""What a baseline was measured on and with: hardware fingerprint, software versions, model identity.

Nothing here names a user or a path: records are meant to be shared.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HASH_FULL_UP_TO = 512 * 1024 * 1024  # weights up to this size are hashed whole; bigger ones by header


def _chip() -> str:
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            return platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        import psutil

        return int(psutil.virtual_memory().total)


def _accelerator() -> str:
    """What MLX computes on here, read from what is installed (MLX itself is not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("mlx")
    locations = spec.submodule_search_locations if spec else None
    site = Path(next(iter(locations))).parent if locations else None
    if site is not None and any(site.glob("mlx_cuda*.dist-info")):  # what `mlx[cuda]` installs
        return "cuda"
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "metal"
    return "cpu"


def hardware() -> dict:
    """This machine's fingerprint; `id` is the same for every run on the same hardware and OS."""
    memory_bytes = _memory_bytes()
    facts: dict[str, str | int] = {
        "os": platform.system(),
        "os_release": (platform.mac_ver()[0] if sys.platform == "darwin" else "") or platform.release(),
        "arch": platform.machine(),
        "chip": _chip(),
        "cpu_count": os.cpu_count() or 0,
        "memory_bytes": memory_bytes,
        "accelerator": _accelerator(),
    }
    stable = [facts["os"], facts["arch"], facts["chip"], facts["cpu_count"],
              round(memory_bytes / 2**30), facts["accelerator"]]
    facts["id"] = "m-" + hashlib.sha256(json.dumps(stable).encode()).hexdigest()[:12]
    return facts


def machine_label(machine: dict) -> str:
    """A short human name: the label given at benchmark time, else chip and memory."""
    if machine.get("label"):
        return str(machine["label"])
    return f"{machine['chip']} · {machine['memory_bytes'] / 2**30:.0f} GiB"


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def software() -> dict:
    return {"broke": _version("broke"), "mlx": _version("mlx"), "mlx_lm": _version("mlx-lm"),
            "python": platform.python_version()}


def _weights_digest(files: list[Path]) -> tuple[str, str]:
    """sha256 over the weight files: whole when small, else each file's safetensors header and size."""
    digest = hashlib.sha256()
    whole = sum(f.stat().st_size for f in files) <= HASH_FULL_UP_TO
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            if whole:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            else:
                size = int.from_bytes(handle.read(8), "little")
                digest.update(handle.read(min(size, 64 << 20)))
                digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest(), "sha256" if whole else "sha256-headers"


def model_identity(name: str, directory: Path) -> dict:
    """Who the model is: name, architecture, quantisation, size on disk, hub revision, weights hash."""
    from broke.local.models import WEIGHT_SUFFIXES, inspect_model

    info = inspect_model(name, directory)
    weights = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    digest, method = _weights_digest(weights) if weights else ("", "none")
    resolved = directory.resolve()
    revision = resolved.name if resolved.parent.name == "snapshots" else None  # hub cache: snapshots/<commit>
    return {"name": name, "model_type": info.model_type, "quantization": info.quantization,
            "size_bytes": info.size_bytes, "revision": revision, "weights_sha256": digest, "hash_method": method}
