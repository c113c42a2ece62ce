"""Request metrics of the front proxy, exposed in the Prometheus text format."""
from __future__ import annotations

from collections import Counter, defaultdict, deque

#: Latencies kept per (slot, backend) for quantiles: the newest N.
WINDOW = 2048
QUANTILES = (0.5, 0.9, 0.99)


def _labels(**labels: str) -> str:
    body = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in labels.items())
    return "{" + body + "}"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (slot, backend, status)
        self.failovers: Counter[tuple[str, str, str]] = Counter()  # (slot, backend, reason)
        self.rejected: Counter[tuple[str, int]] = Counter()  # (reason, status)
        self.latency: dict[tuple[str, str], deque[float]] = defaultdict(lambda: deque(maxlen=WINDOW))
        self.on_replica: Counter[tuple[str, str, str, int]] = Counter()  # (backend, node, replica, status)
        self.in_flight = 0
        self.cost: defaultdict[tuple[str, str], float] = defaultdict(float)  # (slot, backend) -> USD
        self.saved: defaultdict[tuple[str, str], float] = defaultdict(float)  # below the reference
        self.unpriced: Counter[tuple[str, str]] = Counter()  # (slot, backend) -> answers with no price

    def answered(self, slot: str, backend: str, status: int, seconds: float) -> None:
        self.requests[(slot, backend, status)] += 1
        self.latency[(slot, backend)].append(seconds)

    def ran_on(self, backend: str, node: str, replica: str, status: int) -> None:
        """An answer of a local model's worker: where it ran."""
        self.on_replica[(backend, node, replica, status)] += 1

    def failed_over(self, slot: str, backend: str, reason: str) -> None:
        self.failovers[(slot, backend, reason)] += 1

    def priced(self, slot: str, backend: str, cost_usd: float | None, reference_usd: float | None) -> None:
        if backend == "-":
            return
        if cost_usd is None:
            self.unpriced[(slot, backend)] += 1
            return
        self.cost[(slot, backend)] += cost_usd
        if reference_usd is not None:
            self.saved[(slot, backend)] += reference_usd - cost_usd

    def reject(self, reason: str, status: int) -> None:
        self.rejected[(reason, status)] += 1

    def render(self, generation: int) -> str:
        lines = [
            "# HELP broke_requests_total Requests answered, by slot, backend and status.",
            "# TYPE broke_requests_total counter",
        ]
        lines += [f"broke_requests_total{_labels(slot=s, backend=b, status=str(c))} {n}"
                  for (s, b, c), n in sorted(self.requests.items())]
        lines += ["# HELP broke_replica_requests_total Answers of local models' workers, by node and replica.",
                  "# TYPE broke_replica_requests_total counter"]
        lines += [f"broke_replica_requests_total{_labels(backend=b, node=n, replica=r, status=str(c))} {k}"
                  for (b, n, r, c), k in sorted(self.on_replica.items())]
        lines += ["# HELP broke_failovers_total Attempts that failed before the first byte and moved on.",
                  "# TYPE broke_failovers_total counter"]
        lines += [f"broke_failovers_total{_labels(slot=s, backend=b, reason=r)} {n}"
                  for (s, b, r), n in sorted(self.failovers.items())]
        lines += ["# HELP broke_rejected_total Requests refused before routing (auth, limits, bad input).",
                  "# TYPE broke_rejected_total counter"]
        lines += [f"broke_rejected_total{_labels(reason=r, status=str(c))} {n}"
                  for (r, c), n in sorted(self.rejected.items())]
        for name, counter, what in (("broke_cost_usd_total", self.cost, "USD spent"),
                                    ("broke_saved_usd_total", self.saved, "USD saved against each slot's reference"),
                                    ("broke_unpriced_total", self.unpriced, "Answers of backends with no price")):
            lines += [f"# HELP {name} {what}, by slot and backend.", f"# TYPE {name} counter"]
            lines += [f"{name}{_labels(slot=s, backend=b)} {round(value, 9)}"
                      for (s, b), value in sorted(counter.items())]
        lines += ["# HELP broke_request_seconds Latency of answered requests (newest window).",
                  "# TYPE broke_request_seconds summary"]
        for (s, b), values in sorted(self.latency.items()):
            window = list(values)
            for q in QUANTILES:
                lines.append(f"broke_request_seconds{_labels(slot=s, backend=b, quantile=str(q))} "
                             f"{quantile(window, q):.6f}")
            lines.append(f"broke_request_seconds_count{_labels(slot=s, backend=b)} {len(window)}")
            lines.append(f"broke_request_seconds_sum{_labels(slot=s, backend=b)} {sum(window):.6f}")
        lines += ["# TYPE broke_in_flight gauge", f"broke_in_flight {self.in_flight}",
                  "# TYPE broke_state_generation gauge", f"broke_state_generation {generation}"]
        return "\n".join(lines) + "\n"
