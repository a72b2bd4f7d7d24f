"""The caching proxy under load: hit throughput, the cold-key herd, stale-while-revalidate.

Serves ``bench.portal_app`` with gunicorn (gthread) against the simulator, all on 127.0.0.1:

1. cache-hit throughput of the ticker route, as a ratio to a bare Flask route returning the
   same bytes in the same server (wrk, interleaved rounds; goal ≥ 0.85);
2. 200 concurrent requests on one cold key → upstream requests counted by the simulator
   (goal 1 per process);
3. upstream slowed to 1 s: latency of requests on a warm-but-expired key (p50/p99).

Run: ``make bench`` or ``.venv/bin/python -m bench.proxy_cache``.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import requests

from bench.serving import gunicorn_portal
from flask_thrillconnect.testing import Simulator

GUNICORN_THREADS = 32
WRK_SECONDS = 4
WRK_CONNECTIONS = 32
ROUNDS = 3
HERD = 200
SWR_CLIENTS = 16
SWR_SECONDS = 3.0


@contextmanager
def proxy_portal(sim: Simulator) -> Iterator[str]:
    args = ["--worker-class", "gthread", "--workers", "1", "--threads", str(GUNICORN_THREADS)]
    with gunicorn_portal(sim, args) as (url, _, _):
        yield url


def wrk_requests_per_second(url: str) -> float:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s", url],
        capture_output=True, text=True, check=True, timeout=WRK_SECONDS + 30,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not match or "Non-2xx" in output:
        raise RuntimeError(f"wrk run failed:\n{output}")
    return float(match.group(1))


def hit_throughput(portal: str, sim: Simulator) -> dict[str, float]:
    instance_id = sim.instance_ids["progressive"]
    ticker = f"{portal}/thrillconnect/v1/thrillpots/instances/{instance_id}/ticker"
    assert requests.get(ticker, timeout=5).headers["X-Cache"] in ("MISS", "HIT")
    bare, proxied = [], []
    for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both alike
        bare.append(wrk_requests_per_second(f"{portal}/bare"))
        proxied.append(wrk_requests_per_second(ticker))
    result = {
        "bare_rps": statistics.median(bare),
        "ticker_rps": statistics.median(proxied),
    }
    result["ratio"] = result["ticker_rps"] / result["bare_rps"]
    return result


def cold_key_herd(portal: str, sim: Simulator) -> dict[str, int]:
    url = f"{portal}/thrillconnect/v1/thrillpots/instances/{sim.instance_ids['sitewide']}/ticker"
    before = sim.stats()["requests"]["ticker"]
    sim.faults(rest={"delay": 0.5})  # keep the first fetch in flight while the herd arrives
    barrier = threading.Barrier(HERD, timeout=30)

    def one(_: int) -> int:
        barrier.wait()
        return requests.get(url, timeout=30).status_code

    try:
        with ThreadPoolExecutor(max_workers=HERD) as pool:
            statuses = list(pool.map(one, range(HERD)))
    finally:
        sim.faults()
    return {
        "requests": HERD,
        "ok": statuses.count(200),
        "upstream_requests": sim.stats()["requests"]["ticker"] - before,
    }


def stale_while_revalidate(portal: str, sim: Simulator) -> dict[str, float]:
    url = f"{portal}/thrillconnect/v1/currencies"
    requests.get(url, timeout=5)  # warm; the bench portal's currencies expire at once
    sim.faults(rest={"delay": 1.0})
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + SWR_SECONDS

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                response = session.get(url, timeout=10)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    key = response.headers.get("X-Cache", str(response.status_code))
                    statuses[key] = statuses.get(key, 0) + 1

    try:
        threads = [threading.Thread(target=client) for _ in range(SWR_CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=SWR_SECONDS + 30)
    finally:
        sim.faults()
    latencies.sort()
    return {
        "requests": len(latencies),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "max_ms": 1000 * latencies[-1],
        "x_cache": statuses,
    }


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk; `make bench` installs it)", file=sys.stderr)
        return 2
    with Simulator(tick_interval=0, seed=1) as sim, proxy_portal(sim) as portal:
        print(f"portal: gunicorn gthread, 1 worker, {GUNICORN_THREADS} threads; wrk -t1 "
              f"-c{WRK_CONNECTIONS} -d{WRK_SECONDS}s, {ROUNDS} interleaved rounds")  # fmt: skip
        hit = hit_throughput(portal, sim)
        print(f"cache-hit throughput: ticker {hit['ticker_rps']:.0f} req/s, bare route "
              f"{hit['bare_rps']:.0f} req/s, ratio {hit['ratio']:.2f} (goal >= 0.85)")  # fmt: skip
        herd = cold_key_herd(portal, sim)
        print(f"cold-key herd: {herd['requests']} concurrent requests, {herd['ok']} answered 200, "
              f"{herd['upstream_requests']} upstream request(s) (goal 1)")  # fmt: skip
        swr = stale_while_revalidate(portal, sim)
        print(f"stale-while-revalidate, upstream slowed to 1 s: {swr['requests']} requests from "
              f"{SWR_CLIENTS} clients, p50 {swr['p50_ms']:.1f} ms, p99 {swr['p99_ms']:.1f} ms, "
              f"max {swr['max_ms']:.1f} ms, X-Cache {swr['x_cache']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
