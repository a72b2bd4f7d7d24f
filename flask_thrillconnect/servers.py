"""Which server runs the relay in this process, and the hook gunicorn needs for it.

The relay serves every browser socket from one thread of its own. Under gunicorn's ``gevent``
worker (a monkey-patched standard library) a browser's request then ends at once: the worker
just closes its socket, and the relay keeps a duplicate (:func:`request_may_end_first`). Under
Werkzeug's dev server and gunicorn's ``gthread`` worker, which shut the connection down as a
request ends, the request's thread waits for the browser's end instead, so a worker needs a
thread per open browser. :func:`server_model` says which of these serves a request (for
``/health/detail``, with a warning when ``gthread`` runs short of threads);
:func:`close_relays_on_stop` is the ``post_worker_init`` hook that makes a stopping worker close
its browsers with 1001 instead of dropping them; :func:`yielder` is how the relay's long loops
let the rest of the worker run, which differs between the two models.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["close_relays_on_stop", "request_may_end_first", "server_model", "yielder"]


def request_may_end_first(environ: MutableMapping[str, Any]) -> bool:
    """Whether a WebSocket's request may end while the relay keeps its connection open.

    True under gunicorn's ``gevent`` worker, which only closes its socket as the request ends
    (the relay holds a duplicate). Werkzeug and gunicorn's ``gthread`` worker shut the
    connection down (a FIN), so there the request lasts as long as the WebSocket.
    """
    return "gunicorn.socket" in environ and _monkey_patched()


def server_model(environ: MutableMapping[str, Any] | None, browsers: int = 0) -> dict[str, Any]:
    """Which server runs this process, for ``/health/detail``; with ``browsers`` open.

    ``worker`` is ``gevent`` (gunicorn's gevent worker, or any server on a monkey-patched
    standard library: evented, no greenlet held per browser), ``gthread`` (gunicorn's threaded
    worker: an OS thread per browser), ``werkzeug`` (the dev server: a thread per browser) or
    ``other``. Under ``gthread`` it also has ``threads`` (gunicorn's ``--threads``, read from
    the worker object at the bottom of the main thread's stack; ``None`` when not found) and,
    when ``browsers`` hold nearly all of them, a ``warning``: a browser past the last thread
    waits, unserved, and so does every ordinary request.
    """
    environ = environ or {}
    software = str(environ.get("SERVER_SOFTWARE", ""))
    gunicorn = "gunicorn.socket" in environ or software.startswith("gunicorn")
    model: dict[str, Any] = {"server": software or None, "evented": _monkey_patched()}
    if model["evented"]:
        model["worker"] = "gevent"
        worker = _gunicorn_worker() if gunicorn else None
        if worker is not None:
            model["worker_connections"] = worker.cfg.worker_connections
        return model
    if gunicorn:
        model["worker"] = "gthread" if environ.get("wsgi.multithread") else "sync"
        worker = _gunicorn_worker()
        threads = worker.cfg.threads if worker is not None else None
        model["threads"] = threads
        # One thread per open browser, and a few for the portal's own requests.
        if threads is not None and browsers + _SPARE_THREADS > threads:
            model["warning"] = (
                f"{browsers} relay browsers hold threads of the {threads} of gthread's --threads:"
                " raise --threads above the browsers expected per worker, or run the gevent"
                " worker"
            )
        return model
    model["worker"] = "werkzeug" if "werkzeug.socket" in environ else "other"
    return model


#: Threads a ``gthread`` worker keeps for ordinary requests beyond one per browser.
_SPARE_THREADS = 8


def yielder() -> Callable[[], None]:
    """What a long loop calls now and then so that the rest of this process runs meanwhile.

    Under gevent, a sleep that ends on the event loop's next turn: the loop polls for I/O on
    the way, so a request waiting for its socket runs too. (``sleep(0)`` only switches to the
    greenlets that are ready already; one that waits for its socket can wait out the whole
    loop.) Elsewhere ``sleep(0)``, which hands the GIL to another thread.
    """
    return _next_loop_turn if _monkey_patched() else _other_threads


#: Seconds of a sleep that ends on gevent's next loop turn: any positive value does.
_LOOP_TURN = 1e-6


def _next_loop_turn() -> None:
    time.sleep(_LOOP_TURN)


def _other_threads() -> None:
    time.sleep(0)


def _monkey_patched() -> bool:
    """Whether gevent has patched the standard library's sockets in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("socket"))


def _gunicorn_worker() -> Any:
    """gunicorn's worker object (its ``cfg`` holds ``--threads``), from the frame of its
    ``run`` loop at the bottom of the main thread's stack; ``None`` when not found."""
    base = sys.modules.get("gunicorn.workers.base")
    if base is None:
        return None
    frame = sys._current_frames().get(threading.main_thread().ident or -1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, base.Worker):
            return candidate
        frame = frame.f_back
    return None


def close_relays_on_stop(worker: Any) -> None:
    """Close every relay's browsers (1001) as soon as gunicorn tells ``worker`` to stop.

    For gunicorn's ``post_worker_init`` hook. On SIGTERM a worker stops accepting and then
    waits, up to ``--graceful-timeout``, for its open requests to end: a relay socket never
    ends by itself, so the master kills the worker when that time is up, and under the
    ``gevent`` worker (where a browser's request has ended already) the worker leaves at once.
    Either way browsers would see the TCP connection drop instead of a close frame. This
    replaces the worker's SIGTERM handler with one that closes the relays in a thread of their
    own (a greenlet under gevent), bounded, and then does what gunicorn's does
    (``worker.alive = False``)::

        # gunicorn.conf.py
        def post_worker_init(worker):
            from flask_thrillconnect.servers import close_relays_on_stop
            close_relays_on_stop(worker)
    """
    import signal

    from .state import shutdown

    def close_then_stop() -> None:
        try:
            shutdown()
        finally:
            worker.alive = False

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=close_then_stop, name="thrillconnect-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
