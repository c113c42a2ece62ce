"""A token check in front of a worker that other machines reach (`worker start --host 0.0.0.0 --token`).

mlx_lm.server has no authentication, so an exposed worker listens on loopback and this small
aiohttp server takes the public address: `/health` is open, everything else needs
`Authorization: Bearer <token>` and is passed through to the worker unchanged (streams included),
except `/v1/models`, answered here with the model's name (the worker's own answer shows the
model's absolute path on this machine, and every model in its hub cache).
"""
from __future__ import annotations

import hmac

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "authorization"}


def make_app(token: str, upstream: str, model: str) -> web.Application:
    session: dict[str, aiohttp.ClientSession] = {}

    async def start(app: web.Application) -> None:
        session["s"] = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))

    async def stop(app: web.Application) -> None:
        await session["s"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.path != "/health":
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.json_response({"error": {"message": "invalid worker token"}}, status=401)
        if request.path.rstrip("/") == "/v1/models":
            return web.json_response({"object": "list", "data": [
                {"id": model, "object": "model", "created": 0, "owned_by": "broke"}]})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session["s"].request(request.method, upstream + request.path_qs, headers=headers,
                                        data=await request.read()) as answer:
            reply = web.StreamResponse(status=answer.status, headers={
                k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP})
            await reply.prepare(request)
            async for chunk in answer.content.iter_any():
                await reply.write(chunk)
            await reply.write_eof()
            return reply

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def serve(token: str, host: str, port: int, upstream_port: int, model: str) -> None:
    web.run_app(make_app(token, f"http://127.0.0.1:{upstream_port}", model), host=host, port=port,
                print=None, handle_signals=True)


if __name__ == "__main__":
    import os
    import sys

    serve(os.environ["BROKE_WORKER_TOKEN"], sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
