"""The shared cache of cluster mode: its figures of issue 10's table, with and without Redis.

Two gunicorn masters ("nodes", 4 gthread workers each) serve :func:`create_app` against the
simulator, all on 127.0.0.1, once without Redis and once with one ``redis-server`` (started
here, no persistence):

1. 400 concurrent requests for one cold ticker, spread over the 8 workers while upstream
   answers in 1 s → upstream ticker requests (goal with Redis: 1);
2. wrk on both nodes for ``--seconds`` (60 by default; a connection per request; ticker TTL
   2 s, no live stream) → upstream ticker requests per TTL (without Redis ≈ 8, goal with
   Redis ≤ 1);
3. cache-hit throughput of the ticker route, Redis mode ÷ in-process mode, on the same kind of
   server (1 worker, 32 threads; interleaved wrk rounds; goal ≥ 0.8).

Run: ``.venv/bin/python -m bench.cluster [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import requests
from flask import Flask, Response

from bench.proxy_cache import wrk_requests_per_second
from bench.serving import free_port, serve
from flask_thrillconnect import ThrillConnect
from flask_thrillconnect.testing import Simulator

NODES = 2
WORKERS = 4
# Below a browser's burst of misses (the herd comes from one address).
HERD_THREADS = 16
HERD = 400
HERD_UPSTREAM_DELAY = 1.0
TICKER_TTL = 2.0
LOAD_CONNECTIONS = 16
HIT_THREADS = 32
ROUNDS = 3
STARTUP_TIMEOUT = 30.0


def create_app() -> Flask:
    """The portal of every worker: ``THRILLCONNECT_URL``, ``THRILLCONNECT_REDIS_URL`` (unset:
    in-process cache) and ``BENCH_TICKER_TTL`` from the environment."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        THRILLCONNECT_URL=os.environ["THRILLCONNECT_URL"],
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        THRILLCONNECT_REDIS_URL=os.environ.get("THRILLCONNECT_REDIS_URL") or None,
        THRILLCONNECT_CACHE_TTL={"ticker": float(os.environ["BENCH_TICKER_TTL"])},
    )
    tc = ThrillConnect(app)

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        tc.sources()  # every worker knows the brand's ids before the herd
        time.sleep(0.05)  # so that concurrent pings reach every worker
        return {"ok": True}

    @app.after_request
    def name_the_worker(response: Response) -> Response:
        response.headers["X-Worker"] = str(os.getpid())
        return response

    return app


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port; its URL."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is needed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tc-bench-redis-") as directory:
        server = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(timeout=10)


def _workers_answering(url: str) -> set[str]:
    def ping(_: int) -> str:
        try:
            return requests.get(f"{url}/ping", timeout=5).headers.get("X-Worker", "")
        except requests.RequestException:
            return ""

    with ThreadPoolExecutor(max_workers=16) as pool:
        return set(pool.map(ping, range(32))) - {""}


@contextmanager
def node(
    sim: Simulator, redis_url: str | None, *, workers: int, threads: int, ticker_ttl: float
) -> Iterator[str]:
    """One gunicorn master (gthread) serving :func:`create_app`; its URL once every worker
    answered."""
    env = {
        "THRILLCONNECT_URL": sim.url,
        "BENCH_TICKER_TTL": str(ticker_ttl),
        "THRILLCONNECT_REDIS_URL": redis_url or "",
    }
    args = ["--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads)]
    with serve("bench.cluster:create_app()", args, env, ready_path="/ping") as (url, _, _):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        seen: set[str] = set()
        while len(seen) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {workers} workers answered")
            seen |= _workers_answering(url)
        yield url


def ticker_url(node_url: str, sim: Simulator, kind: str) -> str:
    return f"{node_url}/thrillconnect/v1/thrillpots/instances/{sim.instance_ids[kind]}/ticker"


def upstream_tickers(sim: Simulator) -> int:
    count: int = sim.stats()["requests"]["ticker"]
    return count


def cold_herd(nodes: Sequence[str], sim: Simulator) -> dict[str, int]:
    """HERD concurrent requests for one cold ticker, alternating between the nodes."""
    urls = [ticker_url(url, sim, "sitewide") for url in nodes]
    barrier = threading.Barrier(HERD, timeout=30)

    def one(index: int) -> tuple[int, str]:
        barrier.wait()
        response = requests.get(urls[index % len(urls)], timeout=30)
        return response.status_code, response.headers.get("X-Worker", "")

    before = upstream_tickers(sim)
    sim.faults(rest={"delay": HERD_UPSTREAM_DELAY})
    try:
        with ThreadPoolExecutor(max_workers=HERD) as pool:
            answers = list(pool.map(one, range(HERD)))
    finally:
        sim.faults()
    return {
        "ok": sum(status == 200 for status, _ in answers),
        "workers": len({worker for _, worker in answers}),
        "upstream": upstream_tickers(sim) - before,
    }


def load(nodes: Sequence[str], sim: Simulator, seconds: int) -> dict[str, float]:
    """wrk on every node at once for ``seconds``: upstream ticker requests per TTL."""
    urls = [ticker_url(url, sim, "progressive") for url in nodes]
    before = upstream_tickers(sim)
    runs = [
        subprocess.Popen(
            # A connection per request: every worker of the node takes its share.
            [
                "wrk",
                "-t1",
                f"-c{LOAD_CONNECTIONS}",
                f"-d{seconds}s",
                "-H",
                "Connection: close",
                url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    for run in runs:
        run.communicate(timeout=seconds + 30)
    upstream = upstream_tickers(sim) - before
    return {"upstream": upstream, "per_ttl": upstream / (seconds / TICKER_TTL)}


def cluster_figures(
    sim: Simulator, redis_url: str | None, seconds: int
) -> tuple[dict[str, int], dict[str, float]]:
    """The herd and the load on NODES nodes of WORKERS workers."""
    with ExitStack() as stack:
        nodes = [
            stack.enter_context(
                node(sim, redis_url, workers=WORKERS, threads=HERD_THREADS, ticker_ttl=TICKER_TTL)
            )
            for _ in range(NODES)
        ]
        return cold_herd(nodes, sim), load(nodes, sim, seconds)


def hit_throughput_ratio(sim: Simulator, redis_url: str) -> dict[str, float]:
    """Cache hits per second of the ticker route, Redis mode and in-process mode, in
    interleaved rounds on two servers of the same kind (1 worker, 32 threads)."""
    with (
        node(sim, None, workers=1, threads=HIT_THREADS, ticker_ttl=3600.0) as memory_node,
        node(sim, redis_url, workers=1, threads=HIT_THREADS, ticker_ttl=3600.0) as redis_node,
    ):
        urls = {"memory": ticker_url(memory_node, sim, "progressive")}
        urls["redis"] = ticker_url(redis_node, sim, "progressive")
        for url in urls.values():
            assert requests.get(url, timeout=5).ok
        rates: dict[str, list[float]] = {"memory": [], "redis": []}
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both alike
            for mode, url in urls.items():
                rates[mode].append(wrk_requests_per_second(url))
    result = {mode: statistics.median(values) for mode, values in rates.items()}
    result["ratio"] = result["redis"] / result["memory"]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the load phase")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk; `make bench` installs it)", file=sys.stderr)
        return 2
    with Simulator(tick_interval=0, seed=1) as sim, redis_server() as redis_url:
        print(f"{NODES} nodes x {WORKERS} gthread workers ({HERD_THREADS} threads), ticker TTL "
              f"{TICKER_TTL:g} s, no live stream")  # fmt: skip
        for label, url in (("without Redis", None), ("with Redis", redis_url)):
            herd, steady = cluster_figures(sim, url, args.seconds)
            print(f"{label}: {HERD} cold requests ({herd['ok']} answered 200, by "
                  f"{herd['workers']} workers) -> {herd['upstream']} upstream ticker "
                  f"request(s); wrk on both nodes for {args.seconds} s -> "
                  f"{steady['upstream']} upstream ticker requests, "
                  f"{steady['per_ttl']:.2f} per TTL")  # fmt: skip
        hits = hit_throughput_ratio(sim, redis_url)
        print(f"cache-hit throughput (1 worker, {HIT_THREADS} threads; wrk, {ROUNDS} interleaved "
              f"rounds): in-process {hits['memory']:.0f} req/s, Redis {hits['redis']:.0f} "
              f"req/s, ratio {hits['ratio']:.2f} (goal >= 0.8)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
