"""Inside a strict sandbox: listen on 127.0.0.1:PORT, relay each connection to the gateway's Unix
socket, and run the command. Standard library only: it runs as a script, with `python -I -S`.

Usage: forward.py PORT SOCKET -- COMMAND [ARGS]...  (the command replaces this process; the relay
goes on in a child that the sandbox's PID namespace ends with it)
"""
from __future__ import annotations

import asyncio
import os
import socket
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve(listener: socket.socket, path: str) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(path)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: forward.py PORT SOCKET -- COMMAND [ARGS]...", file=sys.stderr)
        return 2
    port, path, command = int(argv[0]), argv[1], argv[3:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)  # listening before the command starts: its first request finds the port open
    if os.fork() == 0:
        os.setsid()  # the terminal's signals are the command's
        asyncio.run(_serve(listener, path))
        os._exit(0)
    listener.close()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"broke sandbox: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
