"""A TCP proxy for fault tests: cut, stall or refuse what goes to a real server."""

from __future__ import annotations

import asyncio
from typing import Any


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a server, for faults a network really has.

    ``cut()`` resets every proxied connection (both ends see the TCP connection die) and holds
    new ones: they are accepted but go nowhere, as through a partition, until ``restore()``
    forwards them (what the client sent meanwhile included). ``blackhole()`` keeps connections
    open but silently drops what flows in the given direction(s), as a stalled path does.
    ``refuse()`` resets every connection and every new one at once, as a server that is down.
    """

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").rpartition(":")
        self._target = (host, int(port))
        self._open = asyncio.Event()
        self._open.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.drop_up = False  # client -> service bytes are dropped
        self.drop_down = False  # service -> client bytes are dropped
        self.accepted = 0  # connections clients opened to the proxy
        self.forwarded = 0  # of them, the ones that reached the service
        self._closing = False
        self.refusing = False

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._closing = True
        self._abort_all()
        self._open.set()  # held connections see the proxy closing and end
        async with asyncio.timeout(5):
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        self._open.clear()
        self.drop_up = self.drop_down = False
        self._abort_all()

    def refuse(self) -> None:
        self.refusing = True
        self._abort_all()

    def restore(self) -> None:
        self.refusing = False
        self._open.set()

    def blackhole(self, *, up: bool = True, down: bool = True) -> None:
        self.drop_up, self.drop_down = up, down

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.accepted += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            if self.refusing:
                return
            await self._open.wait()
            if self._closing or writer.transport.is_closing():
                return
            up_reader, upstream = await asyncio.open_connection(*self._target)
            self._writers.add(upstream)
            self.forwarded += 1
            await asyncio.gather(
                self._pipe(reader, upstream, up=True), self._pipe(up_reader, writer, up=False)
            )
        except OSError:
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._writers.discard(end)
                    end.transport.abort()
            self._handlers.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.drop_up if up else self.drop_down:
                    continue
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except OSError:
            writer.transport.abort()
