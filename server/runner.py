"""Serving the app with uvicorn: a socket we bind ourselves, header and idle timeouts, a background mode for tests."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import threading
import time
import asyncio
from typing import Sequence

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from decodelab.engine.backends.base import Backend

from .app import Api, Limits, Router
from .delivery import HALF_CLOSED
from .metrics import Metrics
from .scheduler import Scheduler


def timed_protocol(header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections whose request (headers and body) takes over header_timeout."""

    class TimedH11Protocol(H11Protocol):
        _request_timer: asyncio.TimerHandle | None = None
        _half_closed = False

        # a Transport, as uvicorn's own override takes (it ignores the same narrowing of asyncio's BaseTransport)
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._request_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._request_timer is not None:
                self._request_timer.cancel()
                self._request_timer = None

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
                self._disarm()  # the whole request is in

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._half_closed:
                self.transport.close()  # the client sends no more requests
            elif not self.transport.is_closing():
                self._arm()  # the next request on this connection gets the same time

        # uvicorn says -> None; asyncio's Protocol.eof_received may return True to keep the transport open
        def eof_received(self) -> bool | None:  # type: ignore[override]
            """A client that shuts its writing side after a whole request still gets its answer (delivery.py)."""
            # DONE, or MUST_CLOSE when the request said Connection: close or came as HTTP/1.0 (nc -N's usual case:
            # such a client once got nothing back at all)
            if self.cycle is not None and not self.cycle.response_complete and \
                    self.conn.their_state in (h11.DONE, h11.MUST_CLOSE):
                self._half_closed = True
                self.cycle.scope[HALF_CLOSED] = True  # type: ignore[literal-required]  # our key; HTTPScope lacks it
                return True  # keep the transport open for the answer
            return None  # otherwise asyncio closes it, as uvicorn does

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _too_slow(self) -> None:
            self._request_timer = None
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
                if self.cycle is None or self.cycle.response_complete:
                    self.transport.close()

    return TimedH11Protocol


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning when the server is reachable from other machines without a key."""
    if api_key or is_loopback(host):
        return None
    return (f"warning: listening on {host} without --api-key: anyone who can reach this port can use the model. "
            "Set --api-key (or DECODELAB_API_KEY), or listen on 127.0.0.1")


class Server:
    """A running `decodelab serve`: start() in a background thread (tests), or run() in the foreground."""

    def __init__(self, loaded: Backend, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                 model_name: str | None = None, limits: Limits | None = None, max_queue: int = 32,
                 header_timeout: float = 10.0, idle_timeout: float = 5.0, max_connections: int = 128,
                 extra: Sequence[tuple[Backend, str, int | None]] = ()):
        """extra: more (loaded model, served name, key/value budget) to serve, routed by the request's `model`."""
        self.limits = dataclasses.replace(limits or Limits(), request_timeout=header_timeout)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))  # OSError here: the caller says which address failed
        except OSError:
            self.sock.close()
            raise
        apis: list[Api] = []
        metrics = Metrics()  # one /metrics for every model served
        for model, name, budget in [(loaded, model_name or loaded.name, self.limits.kv_budget), *extra]:
            scheduler = Scheduler(model, max_rows=self.limits.max_rows, max_queue=max_queue,  # one batch per model
                                  pad=self.limits.batch_invariant, prefill_chunk=self.limits.prefill_chunk,
                                  kv_budget=budget)
            apis.append(Api(model, scheduler, name, api_key, self.limits, metrics))
        self.schedulers = [api.scheduler for api in apis]
        self.scheduler = self.schedulers[0]
        self.api = apis[0] if len(apis) == 1 else Router(apis)
        # uvicorn annotates timeout_keep_alive as int, but it is call_later's delay: a float works
        config = uvicorn.Config(self.api.app(), http=timed_protocol(header_timeout),
                                timeout_keep_alive=idle_timeout,  # type: ignore[arg-type]
                                h11_max_incomplete_event_size=64 * 1024, log_level="warning", lifespan="off",
                                access_log=False, limit_concurrency=max_connections)  # beyond it: 503 at once
        self.uvicorn = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"  # IPv6 in brackets

    def run(self) -> None:
        """Serve in this thread until Ctrl-C (uvicorn handles the signal)."""
        try:
            self.uvicorn.run(sockets=[self.sock])
        finally:
            for scheduler in self.schedulers:
                scheduler.stop()

    def start(self) -> "Server":
        self.thread = threading.Thread(target=self.uvicorn.run, kwargs={"sockets": [self.sock]},
                                       name="decodelab-serve", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        for scheduler in self.schedulers:
            scheduler.stop()
        self.sock.close()


def auto_kv_budget(loaded: Backend) -> int | None:
    """The key/value cache budget when none is given: 90% of the GPU memory free after loading, or 80% of the
    memory the system has available on a CPU; None when neither can be read."""
    import torch

    device = getattr(loaded, "device", None)
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.9)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * 0.8)
    except OSError:
        return None
    return None
