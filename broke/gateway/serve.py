"""Entry point of the front proxy process: `python -m broke.gateway.serve` (started by `broke start`)."""
from __future__ import annotations

import importlib.util
import logging
import sys

import uvicorn

from broke.control.runfiles import master_key, read_record
from broke.gateway.limits import MAX_HEADER_BYTES
from broke.gateway.proxy import FrontProxy
from broke.paths import broke_home


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would flood the log
    home = broke_home()
    record = read_record(home)
    if record is None:
        print(f"no gateway record in {home}/run; start the gateway with `broke start`", file=sys.stderr)
        return 1
    proxy = FrontProxy(home, record, master_key(home))
    uvicorn.run(
        proxy.app(),
        host="127.0.0.1",
        port=record.front.port,
        log_level="warning",
        access_log=False,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        timeout_graceful_shutdown=5,
        # h11 stops reading headers past this; with httptools the app refuses them (431, proxy.py)
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        # Clients keep their connections; closing an idle one after uvicorn's default 5 s races with a
        # client that reuses it at that moment (it sees a reset and loses the request).
        timeout_keep_alive=75,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
