"""A key that cannot go into an HTTP header is refused up front, naming the setting, never shown."""

from __future__ import annotations

import anyio
import pytest
from helpers import running_mock, total_requests
from inprocess_cli import environment, run_main

from sora_async import ConfigurationError, SoraClient

pytestmark = pytest.mark.anyio

BODY = "sk-KEYBODY-7f3a9c"


@pytest.mark.parametrize(
    ("key", "said"),
    [
        (BODY + "\n", "trailing newline"),
        (BODY + "\r\n", "trailing newline"),
        (BODY + " ", "trailing whitespace"),
        ("\t" + BODY, "starts with whitespace"),
        ("sk-KEY\x00BODY-7f3a9c", "control character at position 7"),
        ("sk-KEY BODY-7f3a9c", "control character at position 7"),
        ("sk-KEYBODY-7f3a9c\u00e9", "non-ASCII character at position 18"),
    ],
    ids=["lf", "crlf", "space", "tab", "nul", "inner-space", "non-ascii"],
)
async def test_unusable_key_is_refused_before_any_request(key: str, said: str) -> None:
    async with running_mock() as mock:
        with pytest.raises(ConfigurationError) as caught:
            client = SoraClient("freesora", key, base_url=mock.freesora_url)
            async with client:
                await client.credits()
        assert total_requests(mock) == 0
    message = str(caught.value)
    assert said in message
    assert "api_key" in message
    assert "SORA_API_KEY" in message
    assert "KEYBODY" not in message and "7f3a9c" not in message


async def test_a_key_of_every_token_character_is_sent() -> None:
    key = "sk-AZaz09-._~+/="
    async with (
        running_mock(api_keys={key}) as mock,
        SoraClient("freesora", key, base_url=mock.freesora_url) as client,
    ):
        credits = await client.credits()
    assert credits.left_credits >= 0


async def test_cli_names_the_environment_variable_in_one_line() -> None:
    environ = environment(SORA_API_KEY=BODY + "\n")
    async with running_mock() as mock:
        argv = ["--base-url", mock.freesora_url, "credits"]
        with anyio.fail_after(60):  # a hang guard, not a timing assertion
            done = await run_main(argv, environ)
        assert total_requests(mock) == 0
    stderr = done.stderr
    assert done.returncode == 2, stderr
    [line] = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert "from environment SORA_API_KEY" in line and "trailing newline" in line
    assert "KEYBODY" not in stderr + done.stdout
