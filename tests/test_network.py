"""Real networks: a forward proxy process on 127.0.0.1 and an HTTPS mock with its own CA.

proxy= and HTTP(S)_PROXY carry API calls and downloads through the proxy, NO_PROXY exempts a
host, and ssl= / SSL_CERT_FILE decide which CA the TLS connection is verified against. The
proxy's log is the evidence of what went through it and of what its operator could read.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from helpers import KEY, client_for, running_mock
from inprocess_cli import environment, run_main
from proxy_support import ForwardProxy, self_signed_certificate, server_context

from sora_async import ConfigurationError, SoraClient, VideoRequest
from sora_async.config import resolve_network
from sora_async.errors import ConnectError, CreateOutcomeUnknownError
from sora_async.mock import MockConfig, MockServer
from sora_async.retry import RetryPolicy

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_backoff_waits")]

LONG_KEY = "sk-NETWORK-canary-7d41e0b2a9"


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy() as server:
        yield server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    yield self_signed_certificate(tmp_path_factory.mktemp("tls"))


def key_lines(proxy: ForwardProxy, key: str) -> list[str]:
    return [line for line in proxy.log if key in line]


async def generate_and_download(client: SoraClient, out: Path) -> list[Path]:
    result = await client.generate(VideoRequest("a kite through a proxy"))
    assert result.ok, result.error
    return await client.download(result, out)


async def test_an_explicit_proxy_carries_api_calls_and_downloads(
    proxy: ForwardProxy, tmp_path: Path
) -> None:
    async with running_mock() as mock:
        client = client_for(mock, "freesora", key=LONG_KEY, proxy=proxy.url, env={})
        async with client:
            [path] = await generate_and_download(client, tmp_path)
        methods = {(method, target.split("?")[0]) for method, target in proxy.requests}
        assert ("POST", f"{mock.freesora_url}/v1/video/sora-video") in methods
        assert ("POST", f"{mock.freesora_url}/video-generations/check-result") in methods
        [task] = mock.tasks(LONG_KEY)
        assert ("GET", f"{mock.base_url}/files/{task.task_id}.mp4") in methods
        assert path.read_bytes() == mock.file_bytes(task.task_id)
    # The key is in the Authorization header it forwards, and nowhere else in its log.
    assert key_lines(proxy, LONG_KEY)
    assert all(line == f"Authorization: Bearer {LONG_KEY}" for line in key_lines(proxy, LONG_KEY))
    # The storage host's requests carry no Authorization at all.
    downloads = [head for head in proxy.heads if "/files/" in head[0]]
    assert downloads
    for head in downloads:
        assert not any(line.lower().startswith("authorization:") for line in head)


async def test_http_proxy_from_the_environment_and_no_proxy(
    proxy: ForwardProxy, tmp_path: Path
) -> None:
    async with running_mock() as mock:
        env = {"HTTP_PROXY": proxy.url}
        async with client_for(mock, "freesora", env=env) as client:
            await generate_and_download(client, tmp_path / "a")
        through = len(proxy.requests)
        assert through >= 3  # create, at least one poll, the download

        env = {"HTTP_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.1"}
        async with client_for(mock, "freesora", env=env) as client:
            await generate_and_download(client, tmp_path / "b")
        assert len(proxy.requests) == through  # nothing more went through it

        # NO_PROXY exempts a host from an explicit proxy as well, as curl does.
        env = {"no_proxy": "127.0.0.1"}
        async with client_for(mock, "freesora", proxy=proxy.url, env=env) as client:
            await generate_and_download(client, tmp_path / "c")
        assert len(proxy.requests) == through


async def test_https_through_a_connect_tunnel_with_a_custom_ca(
    proxy: ForwardProxy, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    config = MockConfig(task_seconds=0.2, jitter=0.0)
    async with MockServer(config, ssl_context=server_context(cert, key)) as mock:
        assert mock.base_url.startswith("https://")
        env = {"HTTPS_PROXY": proxy.url}
        client = client_for(mock, "sora2api", key=LONG_KEY, ssl=str(cert), env=env)
        async with client:
            [path] = await generate_and_download(client, tmp_path)
        [task] = mock.tasks(LONG_KEY)
        assert path.read_bytes() == mock.file_bytes(task.task_id)
    authority = f"127.0.0.1:{mock.port}"
    assert proxy.requests and set(proxy.requests) == {("CONNECT", authority)}
    # Inside a tunnel the proxy sees neither the key nor a path.
    assert key_lines(proxy, LONG_KEY) == []
    assert not any("/api" in line or "/files" in line for line in proxy.log)


async def test_a_ca_bundle_is_read_once_until_the_file_changes(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(cert.read_bytes())
    env = {"SSL_CERT_FILE": str(bundle)}
    # Read once: a service making a client per request no longer parses it each time.
    first = resolve_network(env=env).ssl_context
    assert first is not None and resolve_network(env=env).ssl_context is first
    # Replaced by a bundle that does not hold our server's CA: trust follows the file.
    (tmp_path / "other").mkdir()
    other, _ = self_signed_certificate(tmp_path / "other")
    bundle.write_bytes(other.read_bytes())
    assert resolve_network(env=env).ssl_context is not first
    config = MockConfig(task_seconds=0.2, jitter=0.0)
    server = MockServer(config, ssl_context=server_context(cert, key))
    async with server as mock, client_for(mock, "sora2api", env=env) as client:
        with pytest.raises(ConnectError, match="TLS failure"):
            await client.status("task_unknown_0000")


async def test_the_ca_bundle_decides_trust(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    config = MockConfig(task_seconds=0.2, jitter=0.0)
    async with MockServer(config, ssl_context=server_context(cert, key)) as mock:
        async with client_for(mock, "sora2api", env={}) as client:
            with pytest.raises(ConnectError, match="TLS failure"):
                await client.status("task_unknown_0000")
        assert mock.tasks(KEY) == []
        # SSL_CERT_FILE names the bundle when ssl= is not given.
        env = {"SSL_CERT_FILE": str(cert)}
        async with client_for(mock, "sora2api", env=env) as client:
            result = await client.generate(VideoRequest("a kite over TLS"))
        assert result.ok


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"proxy": "ftp://127.0.0.1:21"}, "proxy must be an http"),
        ({"proxy": "not a url"}, "proxy must be an http"),
        ({"env": {"HTTPS_PROXY": "socks5://127.0.0.1:1"}}, "HTTPS_PROXY environment variable"),
        ({"ssl": "/nonexistent/ca.pem"}, "ssl: cannot load the CA bundle"),
        ({"env": {"SSL_CERT_FILE": "/nonexistent/ca.pem"}}, "SSL_CERT_FILE environment"),
    ],
)
async def test_bad_network_settings_fail_before_any_request(
    options: dict[str, object], named: str
) -> None:
    async with running_mock() as mock:
        with pytest.raises(ConfigurationError, match=named):
            client_for(mock, "freesora", **options)
        assert sum(mock.counters.requests.values()) == 0


async def test_a_proxy_password_never_shows_in_a_repr() -> None:
    proxy = "http://user:hunter2pw@127.0.0.1:1"
    client = SoraClient("freesora", "k" * 20, proxy=proxy, env={})
    assert "hunter2pw" not in repr(client) + repr(client.settings)
    assert "hunter2pw" not in repr(resolve_network(proxy=proxy, env={"HTTPS_PROXY": proxy}))


async def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    with anyio.fail_after(60):  # a hang guard
        return await run_main(argv, environment(SORA_API_KEY=LONG_KEY))


async def test_the_cli_proxy_flag(proxy: ForwardProxy) -> None:
    async with running_mock() as mock:
        bad = await run_cli(
            "--base-url", mock.freesora_url, "--proxy", "ftp://127.0.0.1:1", "credits"
        )
        assert bad.returncode == 2
        [line] = bad.stderr.strip().splitlines()
        assert line.startswith("sora-async: error:") and "proxy" in line
        good = await run_cli("--base-url", mock.freesora_url, "--proxy", proxy.url, "credits")
        assert good.returncode == 0, good.stderr
    assert proxy.requests == [("POST", f"{mock.freesora_url}/get-user-credits")]


async def test_a_proxy_asking_for_credentials_is_not_an_unknown_create() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with running_mock() as mock:
            client = client_for(mock, "freesora", proxy=proxy_url, retry=RetryPolicy(attempts=1))
            async with client:
                with pytest.raises(ConnectError, match="HTTP 407") as info:
                    await client.create(VideoRequest("a kite behind a strict proxy"))
                assert not isinstance(info.value, CreateOutcomeUnknownError)
                assert client.unfinished_tasks == {}
            assert sum(mock.counters.requests.values()) == 0
    finally:
        server.close()
        await server.wait_closed()
