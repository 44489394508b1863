"""The service's gunicorn worker: gevent's, with a deadline on the request head.

gunicorn's gevent worker reads a request's line and headers without any time limit (its
``keepalive`` timeout applies only to the requests after the first on a connection, and the service
runs with keep-alive off). A client that connects and sends nothing, or half a header, then holds
one of the worker's ``worker_connections`` for as long as it likes: an attack with 2,100 idle
connections made both workers of a 2-CPU server stop answering anyone, for as long as it lasted,
and Coral publishes every comment it cannot get a verdict for. Here a connection must deliver its
whole request head within ``header_timeout`` seconds (``MODCLF_HEADER_TIMEOUT``, 10 by default); it
is then answered 408 and closed. The body has its own deadline (``MODCLF_BODY_TIMEOUT``, in
:mod:`modclf.serving.body`). What this cannot do is tell a flood of fresh connections from many
addresses from real traffic: that needs a connection limit per client address in front (a proxy,
or the firewall).

Kept outside :mod:`modclf.serving` for the reason :mod:`modclf.gunicorn_conf` is: gunicorn imports
the worker class in the master, before the metrics directory is set up.
"""

from __future__ import annotations

from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from .settings import load_settings

__all__ = ["HeadTimeout", "ModclfGeventWorker"]

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class HeadTimeout(Exception):
    """The client did not send its whole request line and headers in time."""


class ModclfGeventWorker(GeventWorker):
    """``GeventWorker`` whose connections get ``header_timeout`` seconds to send their request head."""

    def init_process(self) -> None:
        self.header_timeout = load_settings().header_timeout
        self._head_timers: dict[Any, gevent.Timeout] = {}
        super().init_process()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        current = gevent.getcurrent()
        timer = gevent.Timeout(self.header_timeout, HeadTimeout)
        self._head_timers[current] = timer
        timer.start()
        try:
            super().handle(listener, client, addr)
        finally:
            timer.close()
            self._head_timers.pop(current, None)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        timer = self._head_timers.pop(gevent.getcurrent(), None)
        if timer is not None:  # the head is in: from here the body guard and gunicorn's timeout apply
            timer.close()
        return super().handle_request(listener_name, req, sock, addr)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, HeadTimeout):
            self.log.info("closed a connection from %s: no complete request head within %s s",
                          ascii(addr[0] if isinstance(addr, tuple) and addr else addr), self.header_timeout)
            try:
                client.sendall(_REQUEST_TIMEOUT)
            except OSError:
                pass
            return
        super().handle_error(req, client, addr, exc)
