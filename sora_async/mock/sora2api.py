"""sora2api ("Sora2API") endpoints: generate and record-info."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..models import TaskState
from .state import MockState
from .tasks import Outcome, Task
from .wire import bad_field, file_url, is_http_url, origin_of, read_object

__all__ = ["PROVIDER", "SuccessFlag", "generate", "record_data", "record_info"]

PROVIDER = "sora2api"
_FIELDS = ("prompt", "aspectRatio", "quality", "imageUrls", "watermark", "callBackUrl")
_ASPECT_RATIOS = ("landscape", "portrait")
_QUALITIES = ("standard", "hd")


class SuccessFlag:
    """record-info's successFlag values."""

    GENERATING = 0
    SUCCESS = 1
    CREATE_FAILED = 2
    GENERATE_FAILED = 3


def _present(body: dict[str, Any], name: str) -> bool:
    return body.get(name) is not None


def _check_body(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad_field("prompt", "required: a non-empty string")
    if _present(body, "aspectRatio") and body["aspectRatio"] not in _ASPECT_RATIOS:
        raise bad_field("aspectRatio", f"{body['aspectRatio']!r} is not one of landscape, portrait")
    if _present(body, "quality") and body["quality"] not in _QUALITIES:
        raise bad_field("quality", f"{body['quality']!r} is not one of standard, hd")
    if _present(body, "imageUrls"):
        urls = body["imageUrls"]
        if not isinstance(urls, list) or not all(is_http_url(url) for url in urls):
            raise bad_field("imageUrls", "must be an array of http(s) URLs")
    if _present(body, "watermark") and not isinstance(body["watermark"], str):
        raise bad_field("watermark", "must be a string")
    if _present(body, "callBackUrl") and not is_http_url(body["callBackUrl"]):
        raise bad_field("callBackUrl", "must be an http(s) URL")


async def generate(request: web.Request, state: MockState, key: str) -> dict[str, Any]:
    body = await read_object(request)
    _check_body(body)
    # paramJson echoes the documented fields the caller sent, in the caller's order.
    params = {name: value for name, value in body.items() if name in _FIELDS}
    task = state.create_task(
        provider=PROVIDER,
        key=key,
        prompt=body["prompt"],
        params=params,
        cost=state.config.sora2api_price,
        origin=origin_of(request),
        callback_url=body.get("callBackUrl"),
    )
    return {"taskId": task.task_id}


def record_data(task: Task, state: MockState, now: float, url: str) -> dict[str, Any]:
    """record-info's data at ``now``, keyed exactly like the document's sample."""
    status = task.state(now)
    if status is TaskState.SUCCEEDED:
        flag, code = SuccessFlag.SUCCESS, 0
    elif status is TaskState.FAILED and task.outcome is Outcome.FAIL_CREATE:
        flag, code = SuccessFlag.CREATE_FAILED, 400
    elif status is TaskState.FAILED:
        flag, code = SuccessFlag.GENERATE_FAILED, 500
    else:
        flag, code = SuccessFlag.GENERATING, 0
    terminal = status.is_terminal
    return {
        "taskId": task.task_id,
        "paramJson": json.dumps(task.params),
        "completeTime": state.wall_time(task.terminal_at) if terminal else None,
        "response": {"imageUrl": url} if status is TaskState.SUCCEEDED else None,
        "successFlag": flag,
        "errorCode": code,
        "errorMessage": task.error_message if status is TaskState.FAILED else None,
        "createTime": state.wall_time(task.created_at),
    }


async def record_info(request: web.Request, state: MockState, key: str) -> dict[str, Any]:
    task_id = request.query.get("taskId", "")
    if not task_id:
        raise bad_field("taskId", "required in the query string")
    now = state.now()
    task = state.owned_task(PROVIDER, key, task_id, now)
    state.note_poll(task)
    return record_data(task, state, now, file_url(request.app, origin_of(request), task.task_id))
