"""sora_async: an asyncio-native SDK for the Sora 2 text-to-video APIs.

One provider-neutral client over two providers (``freesora``, ``sora2api``), a governor that
keeps the account's task slots full and never over-full, polling that notices completion early
without hammering the server, and a bulk CLI that never pays twice for a prompt.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .client import SoraClient
from .config import Secret, Settings
from .download import DownloadedFile
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectError,
    ConnectionDroppedError,
    CreateOutcomeUnknownError,
    DownloadError,
    InsufficientCreditsError,
    NotFoundError,
    NotSupportedError,
    ProtocolError,
    RateLimitError,
    ReadTimeoutError,
    ServerError,
    SoraError,
    TaskFailedError,
    TransportError,
    UnknownStatusError,
    ValidationError,
    WaitTimeoutError,
)
from .events import (
    EventHook,
    EventKind,
    FileHook,
    FileNamer,
    FileReuser,
    Job,
    ProgressHook,
    TaskEvent,
)
from .fanout import GenerationRun
from .governor import Governor, GovernorStatistics, LocalGovernor, Slot
from .images import PreparedImage
from .models import (
    AspectRatio,
    Character,
    Credits,
    Model,
    Quality,
    TaskResult,
    TaskState,
    TaskStatus,
    VideoRequest,
)
from .polling import PollSchedule
from .retry import RetryPolicy
from .transport import CallTimeouts

__all__ = [
    "APIError",
    "AspectRatio",
    "AuthenticationError",
    "BadRequestError",
    "CallTimeouts",
    "CallbackReceiver",
    "Character",
    "ConfigurationError",
    "ConnectError",
    "ConnectionDroppedError",
    "CreateOutcomeUnknownError",
    "Credits",
    "DownloadError",
    "DownloadedFile",
    "EventHook",
    "EventKind",
    "FileHook",
    "FileNamer",
    "FileReuser",
    "GenerationRun",
    "Governor",
    "GovernorStatistics",
    "InsufficientCreditsError",
    "Job",
    "LocalGovernor",
    "Model",
    "NotFoundError",
    "NotSupportedError",
    "PollSchedule",
    "PreparedImage",
    "ProgressHook",
    "ProtocolError",
    "Quality",
    "RateLimitError",
    "ReadTimeoutError",
    "RetryPolicy",
    "Secret",
    "ServerError",
    "Settings",
    "Slot",
    "SoraClient",
    "SoraError",
    "TaskEvent",
    "TaskFailedError",
    "TaskResult",
    "TaskState",
    "TaskStatus",
    "TransportError",
    "UnknownStatusError",
    "ValidationError",
    "VideoRequest",
    "WaitTimeoutError",
]

if TYPE_CHECKING:
    from .callbacks import CallbackReceiver


def __getattr__(name: str) -> Any:
    # The callback receiver is an aiohttp web server: its module is imported when it is asked
    # for, so that a client (and every CLI run) that never listens does not pay for importing
    # aiohttp.web at start-up.
    if name == "CallbackReceiver":
        from .callbacks import CallbackReceiver

        return CallbackReceiver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
