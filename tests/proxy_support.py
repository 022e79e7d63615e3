"""A real forward proxy on 127.0.0.1 for tests: absolute-form HTTP requests and CONNECT tunnels.

It logs every request head it reads, the way a debugging proxy's access log would (request
line and every header, Authorization included), so tests can check what a proxy operator could
see. For CONNECT it sees only the tunnel's target: what goes through is TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from pathlib import Path
from types import TracebackType

from yarl import URL

_HEAD_END = b"\r\n\r\n"


class ForwardProxy:
    """``async with ForwardProxy() as proxy:`` then ``proxy.url``.

    ``requests`` (method, target), ``heads`` (each request's lines) and ``log`` (all lines) are
    what it saw.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.log: list[str] = []
        self.heads: list[list[str]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_head(self, reader: asyncio.StreamReader) -> list[str] | None:
        try:
            head = await reader.readuntil(_HEAD_END)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None
        lines = [line for line in head.decode("latin-1").split("\r\n") if line]
        method, target = lines[0].split(" ")[:2]
        self.requests.append((method, target))
        self.log.extend(lines)
        self.heads.append(lines)
        return lines

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            lines = await self._read_head(reader)
            if lines is None:
                return
            method, target = lines[0].split(" ")[:2]
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, upstream = await asyncio.open_connection(host, int(port))
                self._writers.add(upstream)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._spawn(_pipe(up_reader, writer))
                await _pipe(reader, upstream)
                return
            url = URL(target)
            assert url.host is not None and url.port is not None
            up_reader, upstream = await asyncio.open_connection(url.host, url.port)
            self._writers.add(upstream)
            self._spawn(_pipe(up_reader, writer))
            while lines is not None:
                # Keep-alive: each request on this connection is read, logged and passed on.
                await _forward(lines, reader, upstream)
                lines = await self._read_head(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for each in (writer, upstream):
                if each is not None:
                    each.close()
                    self._writers.discard(each)


async def _forward(
    lines: list[str], reader: asyncio.StreamReader, upstream: asyncio.StreamWriter
) -> None:
    method, target, version = lines[0].split(" ", 2)
    origin_form = URL(target).raw_path_qs
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    head = "\r\n".join([f"{method} {origin_form} {version}", *lines[1:]]) + "\r\n\r\n"
    upstream.write(head.encode("latin-1"))
    if length:
        upstream.write(await reader.readexactly(length))
    await upstream.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for IP 127.0.0.1 and its key, made by the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
