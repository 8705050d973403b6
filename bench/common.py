"""What every benchmark shares: percentiles, waiting for a condition, and the printed table."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by nearest rank; NaN when there are none."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """One boxed table: the measured figure next to its ceiling from the same run."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    print(f"+{line}+")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print(f"+{line}+")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print(f"+{line}+")


@dataclass
class Result:
    rate: float
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 0.99)


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    expect: int = 200

    def send(self, session: requests.Session) -> requests.Response:
        return session.request(self.method, self.url, headers=self.headers, json=self.body, timeout=30)

    def check(self, session: requests.Session) -> None:
        """One request outside the timed loop; fails loudly if the answer is not the expected status."""
        resp = self.send(session)
        if resp.status_code != self.expect:
            raise RuntimeError(f"{self.method} {self.url}: {resp.status_code} {resp.text[:300]}")


def load(req: Request | Sequence[Request], threads: int, duration: float, warmup: float) -> Result:
    """``threads`` clients send ``req`` back to back for ``warmup`` seconds (not counted), then ``duration``
    seconds (counted); given several requests, client ``i`` sends the ``i``-th (round robin). Every answer must
    have the request's expected status."""
    reqs = [req] if isinstance(req, Request) else list(req)
    barrier = threading.Barrier(threads + 1)
    start_at: list[float] = []
    samples: list[list[float]] = [[] for _ in range(threads)]
    finished = [0.0] * threads
    errors: list[str] = []

    def client(i: int) -> None:
        req = reqs[i % len(reqs)]
        with requests.Session() as s:
            try:
                req.check(s)
            except Exception as exc:  # noqa: BLE001  (reported by the main thread)
                errors.append(str(exc))
            barrier.wait()
            warm_end = start_at[0]
            end = warm_end + duration
            mine = samples[i]
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                resp = req.send(s)
                t1 = time.perf_counter()
                if resp.status_code != req.expect:
                    errors.append(f"{req.method} {req.url}: {resp.status_code} {resp.text[:200]}")
                    break
                if t0 >= warm_end:
                    mine.append((t1 - t0) * 1000)
            finished[i] = time.perf_counter()

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    start_at.append(time.perf_counter() + warmup)
    barrier.wait()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(errors[0])
    latencies = [x for s in samples for x in s]
    # Requests started inside the window and finished after it count: the window runs until the last one
    # finished, so the rate is never flattered.
    window = max(max(finished) - start_at[0], duration)
    return Result(len(latencies) / window, latencies)
