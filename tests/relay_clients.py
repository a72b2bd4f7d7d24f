"""A browser's relay socket for the tests: ``websockets`` (independent of the server's
library), every receive bounded, everything received kept for the assertions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

#: What a page subscribes to: every ThrillConnect jackpot event.
SUBSCRIBE_ALL = {"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "*"}]}}
#: Every receive waits at most this long.
RECV_TIMEOUT = 5.0

Message = dict[str, Any]


class RelayClient:
    """One relay socket: ``seen`` holds every message, ``wins`` the WinEvents and
    ``statuses`` the upstream values of the RelayStatus messages, in order."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.seen: list[Message] = []
        self.wins: list[Message] = []
        self.statuses: list[str] = []

    def send(self, message: str | Message) -> None:
        self.connection.send(message if isinstance(message, str) else json.dumps(message))

    def subscribe(self, message: Message = SUBSCRIBE_ALL) -> None:
        self.send(message)

    def recv(self, timeout: float = RECV_TIMEOUT) -> Message:
        message: Message = json.loads(self.connection.recv(timeout=timeout))
        self.seen.append(message)
        if message.get("msg_name") == "WinEvent":
            self.wins.append(message)
        elif message.get("msg_name") == "RelayStatus" and "upstream" in message.get("data", {}):
            self.statuses.append(message["data"]["upstream"])
        return message

    def recv_until(
        self, predicate: Callable[[Message], bool], timeout: float = RECV_TIMEOUT
    ) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching message within {timeout} s")
            message = self.recv(timeout=remaining)
            if predicate(message):
                return message

    def recv_named(self, name: str, timeout: float = RECV_TIMEOUT) -> Message:
        return self.recv_until(lambda message: message.get("msg_name") == name, timeout)

    def status(self) -> Message:
        return self.recv_named("RelayStatus")

    def connected(self, timeout: float = 10.0) -> None:
        """Wait for a RelayStatus saying the upstream stream is connected."""
        self.recv_until(
            lambda m: m["msg_name"] == "RelayStatus" and m["data"].get("upstream") == "connected",
            timeout,
        )

    def live(self) -> RelayClient:
        """Subscribed to every jackpot event, and told that the upstream stream is connected."""
        self.subscribe(SUBSCRIBE_ALL)
        self.connected()
        return self

    def drain_quiet(self, quiet: float = 0.3, limit: float = 5.0) -> None:
        """Read until nothing arrives for ``quiet`` seconds (at most ``limit`` in all)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                self.recv(timeout=quiet)
            except TimeoutError:
                return

    def close(self) -> None:
        self.connection.close()

    def wait_closed(self, timeout: float = 15.0) -> int | None:
        """Read until the relay closes the socket: the close code it sent (``None``: the
        connection dropped without a close frame)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.recv(timeout=left)
            except TimeoutError:
                break
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd is not None else None
        raise AssertionError(f"the relay did not close the socket within {timeout} s")
