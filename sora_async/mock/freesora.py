"""freesora ("AI Video API") endpoints: create, check-result, get-user-credits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..models import Model, TaskState
from ..providers.freesora import freesora_price
from .state import MockState
from .tasks import Outcome, Task
from .wire import bad_field, file_url, is_http_url, origin_of, read_object

__all__ = ["PROVIDER", "check_result", "create", "status_data", "user_credits"]

PROVIDER = "freesora"
_MODELS = {model.value: model for model in Model}
_ASPECT_RATIOS = ("9:16", "16:9")
_DURATIONS = (10, 15)


def _present(body: dict[str, Any], name: str) -> bool:
    # A JSON null means "not given", as a lenient real server would read it.
    return body.get(name) is not None


def _check_body(body: dict[str, Any]) -> tuple[Model, int | None]:
    """Validate a create body; the model and the duration that prices it."""
    name = body.get("model")
    if name is None:
        raise bad_field("model", "required: one of sora-2, sora-2-pro, sora-2-stable")
    if not isinstance(name, str) or name not in _MODELS:
        raise bad_field("model", f"{name!r} is not one of sora-2, sora-2-pro, sora-2-stable")
    model = _MODELS[name]
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad_field("prompt", "required: a non-empty string")
    if _present(body, "imageData"):
        data = body["imageData"]
        if (
            not isinstance(data, str)
            or not data.startswith("data:image/")
            or (";base64," not in data)
        ):
            raise bad_field("imageData", 'must be a data URL "data:image/<type>;base64,<data>"')
    if _present(body, "url") and not is_http_url(body["url"]):
        raise bad_field("url", "must be an http(s) URL")
    if _present(body, "aspectRatio") and body["aspectRatio"] not in _ASPECT_RATIOS:
        raise bad_field("aspectRatio", f"{body['aspectRatio']!r} is not one of 9:16, 16:9")
    duration: int | None = None
    if _present(body, "duration"):
        value = body["duration"]
        if model is not Model.SORA_2_STABLE:
            raise bad_field("duration", f"only supported by sora-2-stable, not {name}")
        if isinstance(value, bool) or not isinstance(value, int) or value not in _DURATIONS:
            raise bad_field("duration", f"{value!r} is not one of 10, 15")
        duration = value
    if _present(body, "isPublic") and not isinstance(body["isPublic"], bool):
        raise bad_field("isPublic", "must be true or false")
    if _present(body, "remixTargetId") and not (
        isinstance(body["remixTargetId"], str) and body["remixTargetId"]
    ):
        raise bad_field("remixTargetId", "must be a non-empty string")
    if _present(body, "characters"):
        characters = body["characters"]
        if not isinstance(characters, list) or not all(isinstance(c, dict) for c in characters):
            raise bad_field("characters", "must be an array of objects")
        for number, character in enumerate(characters):
            # The document: "each item includes url and timestamps" (example "0,3").
            if not is_http_url(character.get("url")) or not isinstance(
                character.get("timestamps"), str
            ):
                raise bad_field(
                    f"characters[{number}]", "needs url (http(s)) and timestamps (text)"
                )
    return model, duration


async def create(request: web.Request, state: MockState, key: str) -> dict[str, Any]:
    body = await read_object(request)
    model, duration = _check_body(body)
    # Always both keys, as in the document's sample, so strict decoders find them.
    metadata = {
        "remixTargetId": body.get("remixTargetId"),
        "characters": body.get("characters") or [],
    }
    task = state.create_task(
        provider=PROVIDER,
        key=key,
        prompt=body["prompt"],
        params=body,
        cost=freesora_price(model, duration),
        origin=origin_of(request),
        metadata=metadata,
    )
    return {"id": task.task_id}


def status_data(task: Task, now: float, url: str) -> dict[str, Any]:
    """check-result's data, keyed exactly like the document's sample."""
    state = task.state(now)
    done = state is TaskState.SUCCEEDED
    failed = state is TaskState.FAILED
    reason = ""
    if failed:
        reason = "create_failed" if task.outcome is Outcome.FAIL_CREATE else "generation_failed"
    return {
        "status": state.value,
        "progress": task.progress(now),
        "result_url": url if done else None,
        "result_urls": [url] if done else [],
        "failure_reason": reason,
        "error_message": task.error_message if failed else None,
        "credits_refunded": task.refunded,
        "refund_trans_no": task.refund_trans_no,
        "result_pid": task.result_pid if done else None,
        "result_pids": [task.result_pid] if done else [],
        "metadata": dict(task.metadata),
    }


async def check_result(request: web.Request, state: MockState, key: str) -> dict[str, Any]:
    body = await read_object(request)
    task_id = body.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise bad_field("taskId", "required: the id returned by create")
    now = state.now()
    task = state.owned_task(PROVIDER, key, task_id, now)
    state.note_poll(task)
    url = file_url(request.app, origin_of(request), task.task_id)
    data = status_data(task, now, url)
    override = state.status_overrides.get(task.task_id)
    if override is not None:
        data["status"] = override
    return data


async def user_credits(request: web.Request, state: MockState, key: str) -> dict[str, Any]:
    # The document's sample sends no body; whatever is sent is ignored.
    await request.read()
    account = state.account(key)
    state.settle()
    return {
        "left_credits": account.credits,
        "is_recharged": account.recharged,
        "is_pro": state.config.vip,
        "is_vip": state.config.vip,
    }
