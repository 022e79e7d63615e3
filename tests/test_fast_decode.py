"""The providers' fast readers of their usual answers agree with the converter, or step aside.

A fast reader (``_wire.FastReader``) returns the wire object the lenient converter would make,
or None, and then the converter reads the answer (and names a bad field). Hypothesis mutates
the documents' samples and the mock's answers field by field: whatever the reader returns
equals the converter's result, and it returns None wherever the converter refuses.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sora_async.calls import Endpoint, RawResponse
from sora_async.errors import ProtocolError
from sora_async.providers import freesora, sora2api
from sora_async.providers._wire import _NOT_JSON, _parse_json, parse_wire_time

GOLDEN = Path(__file__).parent / "golden"
PROPERTY = settings(
    max_examples=examples(300, 5000),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
# The mutated answers cost 8 ms an example (four readers: 10 CPU-seconds at 300). 100 still
# finds a reader that misreads an answer with fields added (found from 60 up); a misreading
# that needs two fields changed together was missed at 300 as at 100: that is what the
# exhaustive one-field test and the slow run (5000) are for.
MUTATIONS = settings(PROPERTY, max_examples=examples(100, 5000))


def golden(name: str) -> dict[str, Any]:
    data = json.loads((GOLDEN / name).read_text())["data"]
    assert isinstance(data, dict)
    return data


# What the mock answers (the shape a client meets most), besides the documents' samples.
MOCK_RUNNING = {
    "status": "running",
    "progress": 35,
    "result_url": None,
    "result_urls": [],
    "failure_reason": "",
    "error_message": None,
    "credits_refunded": False,
    "refund_trans_no": None,
    "result_pid": None,
    "result_pids": [],
    "metadata": {"remixTargetId": None, "characters": []},
}
MOCK_RECORD = {
    "taskId": "sora2_task_abc",
    "paramJson": '{"prompt": "a kite"}',
    "completeTime": None,
    "response": None,
    "successFlag": 0,
    "errorCode": 0,
    "errorMessage": None,
    "createTime": "2026-12-03 06:00:00",
}

#: (reader, wire class, converter, usual answers)
READERS: list[tuple[Callable[[Any], Any], type, Any, list[dict[str, Any]]]] = [
    (
        freesora._fast_created,
        freesora.FreeSoraCreated,
        freesora._LENIENT,
        [golden("freesora_create_response.json"), {"taskId": "task_2"}],
    ),
    (
        freesora._fast_task,
        freesora.FreeSoraTask,
        freesora._LENIENT,
        [golden("freesora_check_result_response.json"), MOCK_RUNNING],
    ),
    (
        sora2api._fast_created,
        sora2api.Sora2ApiCreated,
        sora2api._LENIENT,
        [golden("sora2api_generate_response.json")],
    ),
    (
        sora2api._fast_record,
        sora2api.Sora2ApiRecord,
        sora2api._LENIENT,
        [golden("sora2api_record_info_response.json"), MOCK_RECORD],
    ),
]
IDS = ["freesora-create", "freesora-status", "sora2api-create", "sora2api-status"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn, sample: dict[str, Any]) -> Any:
    """``sample`` with one to three fields dropped, nulled or replaced (by a scalar, any JSON
    value or a list of strings), a nested object mutated likewise, maybe fields added."""
    if draw(st.integers(0, 19)) == 0:
        return draw(values)  # not even an object
    data = dict(sample)
    names = draw(st.lists(st.sampled_from(sorted(sample)), min_size=1, max_size=3, unique=True))
    for name in names:
        move = draw(st.sampled_from(["drop", "null", "scalar", "value", "texts", "nested"]))
        if move == "drop":
            del data[name]
        elif move == "null":
            data[name] = None
        elif move == "scalar":
            data[name] = draw(scalars)
        elif move == "value":
            data[name] = draw(values)
        elif move == "texts":
            data[name] = draw(st.lists(st.text(max_size=4), max_size=2))
        elif isinstance(data[name], dict) and data[name]:
            data[name] = draw(mutated(data[name]))
    data.update(draw(st.dictionaries(st.text(max_size=6), values, max_size=2)))
    return data


@pytest.mark.parametrize(("read", "cls", "converter", "usual"), READERS, ids=IDS)
def test_the_usual_answers_are_read_fast_and_alike(
    read: Callable[[Any], Any], cls: type, converter: Any, usual: list[dict[str, Any]]
) -> None:
    for data in usual:
        found = read(data)
        assert found is not None, data  # the fast path is taken, not dead code
        assert found == converter.structure(data, cls)


@pytest.mark.parametrize(("read", "cls", "converter", "usual"), READERS, ids=IDS)
@MUTATIONS
@given(data=st.data())
def test_a_fast_reader_agrees_with_the_converter_or_steps_aside(
    read: Callable[[Any], Any],
    cls: type,
    converter: Any,
    usual: list[dict[str, Any]],
    data: st.DataObject,
) -> None:
    _agree(read, cls, converter, data.draw(mutated(data.draw(st.sampled_from(usual)))))


#: One value of each JSON type (and of each Python type json.loads makes), edge values too.
EVERY_KIND = [
    None,
    True,
    False,
    0,
    7,
    -(2**64),
    1.5,
    2.0,
    "",
    "x",
    [],
    ["x"],
    [1],
    [None],
    {},
    {"a": 1},
]


@pytest.mark.parametrize(("read", "cls", "converter", "usual"), READERS, ids=IDS)
def test_each_field_of_each_kind_is_read_alike_or_left_to_the_converter(
    read: Callable[[Any], Any], cls: type, converter: Any, usual: list[dict[str, Any]]
) -> None:
    # Exhaustive over one field at a time: every field, every kind of value, or missing.
    for sample in usual:
        for name, original in sample.items():
            nested = original if isinstance(original, dict) else {}
            for value in [*EVERY_KIND, *({**nested, key: v} for key in nested for v in EVERY_KIND)]:
                for answer in (
                    {**sample, name: value},
                    {k: v for k, v in sample.items() if k != name},
                ):
                    _agree(read, cls, converter, answer)


def _agree(read: Callable[[Any], Any], cls: type, converter: Any, answer: Any) -> None:
    found = read(answer)
    try:
        expected = converter.structure(answer, cls)
    except Exception:
        assert found is None, answer  # the converter names what is wrong
        return
    assert found is None or found == expected, answer


def test_a_bad_field_is_still_named_by_the_converter() -> None:
    data = {**MOCK_RUNNING, "progress": "35"}
    body = json.dumps({"code": 0, "message": "ok", "data": data}).encode()
    answer = RawResponse(endpoint=Endpoint.STATUS, status=200, headers={}, body=body)
    with pytest.raises(ProtocolError, match=r"@ \$\.data\.progress"):
        freesora.FreeSora().decode_status("t", answer)


digits = st.integers(0, 9999).map(lambda n: f"{n:04d}")
pairs = st.integers(0, 99).map(lambda n: f"{n:02d}")


@PROPERTY
@given(st.tuples(digits, pairs, pairs, pairs, pairs, pairs))
def test_a_wire_time_in_the_documents_form_reads_as_strptime_does(
    parts: tuple[str, ...],
) -> None:
    year, month, day, hour, minute, second = parts
    text = f"{year}-{month}-{day} {hour}:{minute}:{second}"
    try:
        expected: dt.datetime | None = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        expected = None
    found = parse_wire_time(text)
    if expected is not None:
        assert found == expected.replace(tzinfo=dt.timezone.utc)
    else:  # whatever the other forms make of it, but never a different reading of the digits
        assert found is None or found.strftime("%Y-%m-%d %H:%M:%S") == text


@PROPERTY
@given(
    st.one_of(
        st.binary(max_size=12).map(lambda tail: b"{" + tail),
        st.recursive(scalars, lambda inner: st.dictionaries(st.text(max_size=4), inner, max_size=3))
        .filter(lambda value: isinstance(value, dict))
        .flatmap(
            lambda value: st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32-be"]).map(
                lambda encoding: json.dumps(value, ensure_ascii=False).encode(encoding)
            )
        ),
    )
)
def test_a_body_is_parsed_as_json_loads_parses_it(body: bytes) -> None:
    # _parse_json takes an object's first bytes for UTF-8 without asking detect_encoding.
    try:
        expected: Any = json.loads(body, parse_constant=lambda name: 1 / 0)
    except (ValueError, ZeroDivisionError, RecursionError):
        expected = "not JSON"
    found = _parse_json(body)
    assert (found if found is not _NOT_JSON else "not JSON") == expected


@pytest.mark.parametrize(
    "after", ["", " \t\r\n", "x", "}", " {}", "\u00a0", "\u2028", " 1", "\x00"]
)
def test_what_follows_an_object_is_judged_as_json_loads_judges_it(after: str) -> None:
    # An object is read without decode()'s regular expressions: only JSON's own whitespace
    # may follow it (str.strip() would take more).
    body = ('{"code": 0, "data": {"id": "t1"}}' + after).encode()
    try:
        expected: Any = json.loads(body)
    except ValueError:
        expected = "not JSON"
    found = _parse_json(body)
    assert (found if found is not _NOT_JSON else "not JSON") == expected
