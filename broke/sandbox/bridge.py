"""Outside a strict sandbox: a Unix socket whose every connection is relayed to the gateway's TCP port.

The socket is the only way out of the sandbox's network namespace; it lives in a private 0700 directory
and reaches nothing but 127.0.0.1:PORT of the gateway. It runs on a thread of the launching process,
so it ends with it.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from pathlib import Path

from broke.sandbox.forward import pipe


class Bridge:
    """`with Bridge(port) as socket_path:` serves the socket for as long as the block runs."""

    def __init__(self, gateway_port: int) -> None:
        self.port = gateway_port
        self._dir = Path(tempfile.mkdtemp(prefix="broke-bridge-"))  # 0700; short, for AF_UNIX's path limit
        self.path = self._dir / "gateway.sock"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broke-sandbox-bridge", daemon=True)
        self._stop: asyncio.Event | None = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_unix_server(self._relay, path=str(self.path))
        self.path.chmod(0o600)
        self._ready.set()
        async with server:
            await self._stop.wait()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._ready.set()
            self._loop.close()

    def __enter__(self) -> Path:
        self._thread.start()
        self._ready.wait(10)
        if not self.path.exists():
            self.__exit__()
            raise OSError(f"the sandbox bridge could not listen on {self.path}")
        return self.path

    def __exit__(self, *_: object) -> None:
        if self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        shutil.rmtree(self._dir, ignore_errors=True)
