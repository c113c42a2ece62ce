"""A real gateway (LiteLLM + front proxy) with two fake backends, for the dashboard's tests."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from conftest import add_fake_backends, module_home, run_cli, serving
from fake_provider import FakeProvider


def save_baseline(home: Path, speeds: dict[str, tuple[float, float]]) -> None:
    """A baseline record of this machine: backend -> (decode tok/s, time to first token s)."""
    from broke import baselines
    from broke.machine import hardware, software

    def model(backend: str, decode: float, ttft: float) -> dict:
        return {"backend": backend, "where": "gateway", "identity": {"name": backend}, "complete": True,
                "load_s": None, "peak_memory_bytes": None, "worker": None, "errors": [], "prompts": [],
                "summary": {"decode_tps": decode, "prefill_tps": decode * 4, "ttft_s": ttft}}

    baselines.save(home, {
        "schema_version": 1, "kind": "broke-baseline", "id": baselines.new_id(),
        "created_at": "2026-01-01T00:00:00Z", "suite": "quick", "runs": 1, "complete": True, "alone": True,
        "machine": hardware(), "software": software(),
        "models": [model(backend, decode, ttft) for backend, (decode, ttft) in speeds.items()]})


@contextmanager
def dashboard_gateway(home: Path):
    fake = FakeProvider().start()
    with module_home(home):
        add_fake_backends(home, fake, "model-a", "model-b")
        run_cli("swap", "sonnet=fake/model-a", "opus=fake/model-b")
        save_baseline(home, {"fake/model-a": (84.0, 0.21), "fake/model-b": (31.5, 0.48)})
        try:
            with serving() as (port, token):
                yield {"home": home, "fake": fake, "url": f"http://127.0.0.1:{port}", "port": port, "token": token}
        finally:
            fake.stop()
