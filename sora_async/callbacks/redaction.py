"""An aiohttp access logger that never writes the callback token, not even a guess at it."""

from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

__all__ = ["redacting_access_logger"]


def redacting_access_logger(
    prefix: str, token: str, replacement: str
) -> type[AbstractAccessLogger]:
    # The segment after the prefix is hidden even when it is not the token: a wrong one may be a
    # truncated copy of it. Mounted as a sub-app, the prefix sits further along the path.
    segment_after_prefix = re.compile(re.escape(prefix) + r"/[^/]*")

    def hide(match: re.Match[str]) -> str:
        segment = match.group(0)[len(prefix) + 1 :]
        return f"{prefix}/{replacement if segment == token else '<redacted>'}"

    class RedactingAccessLogger(AbstractAccessLogger):
        """Logs method, path (token redacted), status and duration; never headers or query."""

        @property
        def enabled(self) -> bool:
            return self.logger.isEnabledFor(logging.INFO)

        def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
            path = segment_after_prefix.sub(hide, request.path).replace(token, replacement)
            self.logger.info(
                '%s "%s %s" %d %.3fs', request.remote, request.method, path, response.status, time
            )

    return RedactingAccessLogger
