"""``python -m flask_thrillconnect.testing`` as a real process."""

from __future__ import annotations

import itertools
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from websockets.sync.client import connect

STARTUP_TIMEOUT = 20.0
RECV_TIMEOUT = 5.0
EXIT_TIMEOUT = 10.0


class RunningSimulator:
    """The simulator process with its stdout read line by line on a helper thread, so that
    every read has a deadline."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask_thrillconnect.testing", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def line(self, timeout: float = STARTUP_TIMEOUT) -> str:
        return self._lines.get(timeout=timeout)

    def terminate(self) -> int:
        """SIGTERM, then the exit status (killed if it does not exit in time)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(EXIT_TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(EXIT_TIMEOUT)


RunSimulator = Callable[..., RunningSimulator]


@pytest.fixture
def run_simulator() -> Iterator[RunSimulator]:
    started: list[RunningSimulator] = []

    def run(*args: str) -> RunningSimulator:
        simulator = RunningSimulator(*args)
        started.append(simulator)
        return simulator

    yield run
    for simulator in started:
        if simulator.process.poll() is None:
            simulator.process.kill()
            simulator.process.wait(EXIT_TIMEOUT)
        for stream in (simulator.process.stdout, simulator.process.stderr):
            if stream is not None:
                stream.close()


def test_the_cli_prints_url_and_token_streams_ticks_and_exits_cleanly(
    run_simulator: RunSimulator,
) -> None:
    simulator = run_simulator("--port", "0", "--tick", "1", "--win-chance", "0")
    url = re.search(r"http://127\.0\.0\.1:(\d+)", simulator.line()).group(0)
    token = simulator.line().rsplit(" ", 1)[-1].strip()
    assert not url.endswith(":0")

    cors = requests.get(url + "/v1/cors", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert cors.status_code == 200
    sources = requests.get(
        url + "/v1/thrillpots/sources", params={"owner_id": "thrilltech:brand1"}, timeout=5
    ).json()
    progressive_id = sources[0]["jackpots"][0]["instance_id"]

    ws_url = url.replace("http://", "ws://") + "/v1/events/thrilltech/brand1"
    arrivals: list[float] = []
    with connect(f"{ws_url}?token=token_00001&currency=EUR", open_timeout=RECV_TIMEOUT) as ws:
        subscribe = {"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "*"}]}}
        ws.send(json.dumps(subscribe))
        deadline = time.monotonic() + 10
        while len(arrivals) < 3 and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=RECV_TIMEOUT))
            if message["msg_name"] == "JackpotUpdate" and message["data"]["id"] == progressive_id:
                arrivals.append(time.monotonic())

    assert len(arrivals) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(0.5 < gap < 2.0 for gap in gaps), gaps

    started = time.monotonic()
    assert simulator.terminate() == 0
    assert time.monotonic() - started < 5


def test_the_cli_stops_on_sigint_too(run_simulator: RunSimulator) -> None:
    simulator = run_simulator("--port", "0", "--tick", "0")
    simulator.line()

    simulator.process.send_signal(signal.SIGINT)

    assert simulator.process.wait(EXIT_TIMEOUT) == 0


@pytest.mark.parametrize("args", [["--tick", "-1"], ["--win-chance", "2"], ["--port", "x"]])
def test_the_cli_refuses_bad_arguments(args: list[str]) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "flask_thrillconnect.testing", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
    )

    assert completed.returncode == 2


def test_loading_the_pytest_plugin_imports_no_simulator_machinery() -> None:
    heavy = (
        "jwt",
        "flask_sock",
        "simple_websocket",
        "flask_thrillconnect.testing.simulator",
        "flask_thrillconnect.testing.world",
    )
    probe = (
        "import sys, flask_thrillconnect.testing.plugin; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=EXIT_TIMEOUT
    )

    assert completed.stdout.strip() == "[]"


def test_without_pyjwt_the_command_says_which_extra_to_install():
    # As after a plain ``pip install flask-thrillconnect``: importing jwt fails.
    code = (
        "import sys; sys.modules['jwt'] = None; "
        "from flask_thrillconnect.testing.__main__ import main; sys.exit(main([]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    assert "pip install 'flask-thrillconnect[testing]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
