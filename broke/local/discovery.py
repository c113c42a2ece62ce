"""Workers announced on the LAN with DNS-SD/mDNS (python-zeroconf): `worker start --advertise` and
`node discover`. An announcement says where a worker is and what it serves, never a token:
discovery grants no access (`node add --discovered` still needs the token's variable)."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zeroconf import ServiceInfo, Zeroconf

SERVICE = "_broke-worker._tcp.local."
#: How long `node discover` listens by default (seconds).
BROWSE_S = 2.0


@dataclass(frozen=True)
class Found:
    """One announced worker."""

    name: str  # NAME@PORT on its machine, also the name `node add --discovered` takes
    model: str
    url: str
    hardware: str


def _address(host: str) -> str:
    """The address other machines reach the worker at: its bind address, or for 0.0.0.0 this host's."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: only picks the outgoing interface
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _info(name: str, model: str, host: str, port: int, hardware: str) -> ServiceInfo:
    from zeroconf import ServiceInfo

    address = _address(host)
    return ServiceInfo(SERVICE, f"{name}.{SERVICE}", addresses=[socket.inet_aton(address)], port=port,
                       properties={"model": model, "hardware": hardware, "path": "/v1"},
                       server=f"{socket.gethostname().split('.')[0]}.local.")


class Announcer:
    """A worker's announcement, for as long as its supervisor runs."""

    def __init__(self, name: str, model: str, host: str, port: int, hardware: str) -> None:
        from zeroconf import Zeroconf

        self.zeroconf: Zeroconf = Zeroconf()
        self.info = _info(name, model, host, port, hardware)
        self.zeroconf.register_service(self.info, allow_name_change=True)

    def close(self) -> None:
        self.zeroconf.unregister_service(self.info)
        self.zeroconf.close()


def browse(seconds: float = BROWSE_S) -> list[Found]:
    """The workers announced on the LAN within `seconds`, by name."""
    from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

    names: set[str] = set()

    def changed(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Added:
            names.add(name)

    zeroconf = Zeroconf()
    try:
        browser = ServiceBrowser(zeroconf, SERVICE, handlers=[changed])
        time.sleep(seconds)
        browser.cancel()
        found = []
        for name in sorted(names):
            info = zeroconf.get_service_info(SERVICE, name, timeout=1000)
            if info is None or not info.parsed_addresses():
                continue
            props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
            found.append(Found(name.removesuffix("." + SERVICE), props.get("model", "?"),
                               f"http://{info.parsed_addresses()[0]}:{info.port}{props.get('path', '/v1')}",
                               props.get("hardware", "")))
        return found
    finally:
        zeroconf.close()
