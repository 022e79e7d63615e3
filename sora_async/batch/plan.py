"""Decide what a batch run does: validate the input, open the journal and register the input
in it, count what to create, resume and leave alone, and refuse what the cost guard forbids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.lowlevel
import attrs

from ..errors import AuthenticationError, ConfigurationError, NotSupportedError, SoraError
from ..models import VideoRequest
from .console import Console, one_line
from .held import forget_held, read_held
from .home import locate_journal, remember_journal
from .input import INPUT_FIELDS, BatchInputError, InputItem, InputReader, request_from_fields
from .journal import (
    ItemRow,
    ItemState,
    Journal,
    JournalMismatchError,
    default_journal_path,
    request_to_json,
)
from .options import BatchOptions
from .request_jsons import RequestJsons

if TYPE_CHECKING:
    from ..client import SoraClient

__all__ = ["LIVE", "Plan", "Planner", "Policy", "request_from_json"]

#: Items registered per journal transaction (and read per query while planning).
REGISTER_CHUNK = 500
#: Validation yields to the event loop (signals, cancellation) this often.
CHECKPOINT_EVERY = 200

#: The journal's meta key for the request options (--model, ...) its items were planned with.
_OPTIONS_KEY = "request_options"

_S = ItemState
TO_CREATE = (_S.PENDING, _S.NOT_CREATED)
#: Items with a task that a run follows (adopted, never created again).
LIVE = (_S.CREATED, _S.RUNNING, _S.DOWNLOADING)


@attrs.define
class Plan:
    """What a run has to do, counted while registering the input."""

    total: int = 0
    to_create: int = 0
    to_resume: int = 0
    succeeded: int = 0
    failed: int = 0
    #: Unknown-outcome items left alone (no --resubmit-unknown).
    unknown: int = 0
    #: Unknown-outcome items that will be sent again (also counted in to_create).
    resubmit: int = 0
    #: Failed items that will be created again, --retry-failed (also counted in to_create).
    retry: int = 0
    #: Credits the items to create cost, by the provider's published prices.
    estimate: int = 0
    #: Items to create whose provider publishes no price.
    unpriced: int = 0


@attrs.frozen
class Policy:
    """Which journal states a run creates: never sent, and the explicit second payments."""

    resubmit_unknown: bool = False
    retry_failed: bool = False

    @property
    def states(self) -> tuple[ItemState, ...]:
        """The states will_create is true of."""
        return tuple(state for state in ItemState if self.will_create(state))

    def will_create(self, state: ItemState) -> bool:
        return (
            state in TO_CREATE
            or (state is _S.UNKNOWN and self.resubmit_unknown)
            or (state is _S.FAILED and self.retry_failed)
        )


def request_from_json(request_json: str) -> VideoRequest:
    """The request a journal recorded (see :func:`~sora_async.batch.journal.request_to_json`)."""
    fields = json.loads(request_json)
    if fields.keys() <= _INPUT_NAMES:  # what request_to_json writes: taken as it is
        return request_from_fields(fields)
    return request_from_fields({name: fields.get(name) for name in INPUT_FIELDS})


_INPUT_NAMES = frozenset(INPUT_FIELDS)


class Planner:
    """Validates and plans one run; ``journal`` is open once :meth:`prepare` got that far."""

    def __init__(self, options: BatchOptions, console: Console) -> None:
        self.input_path = options.input_path
        self.out = options.out
        self.journal_flag: Path | None = options.journal
        self.journal_path = self.journal_flag or default_journal_path(self.out)
        self.defaults = dict(options.defaults)
        self.policy = Policy(options.resubmit_unknown, options.retry_failed)
        self.max_credits: int | None = options.max_credits
        self.dry_run = options.dry_run
        self.console = console
        self.journal: Journal | None = None
        self.total = 0
        #: The cost guard would refuse the real run (--dry-run reports it and exits 2).
        self.refused = False

    async def prepare(self, client: SoraClient) -> Plan:
        """Validate, open the journal, register and count; refuse what the cost guard forbids."""
        self.journal_path, adopted = locate_journal(self.out, self.journal_flag)
        if adopted is not None:
            self.console.warn(adopted)
        reader = InputReader(self.input_path, self.defaults)
        fingerprint, whole = await self._validate(client, reader)
        if whole.total == 0:
            raise BatchInputError(self.input_path, None, "no prompts (the file has no items)")
        self.total = whole.total
        self.console.width = max(5, len(str(whole.total - 1)))
        if not self.journal_path.exists():
            # A new batch: refuse it (or dry-run it) before writing anything, so that a
            # refused input can be edited and run again into the same --out directory.
            await self._check_cost(client, whole)
            if self.dry_run:
                return whole
            journal = self.journal = self._open_journal(client, fingerprint)
            if sum(journal.summary().values()):  # made by another run since: compared
                plan = await self._plan(client, reader, fingerprint, priced=False)
            else:
                plan = await self._register_new(reader, fingerprint)
            # Every item is new, so this plan is the whole one: its prices are whole's.
            plan.estimate, plan.unpriced = whole.estimate, whole.unpriced
            return plan
        self.journal = self._open_journal(client, fingerprint)
        plan = await self._plan(client, reader, fingerprint)
        await self._check_cost(client, plan)
        return plan

    async def _validate(self, client: SoraClient, reader: InputReader) -> tuple[str, Plan]:
        """Check every item; the plan of the whole input as if nothing had been done yet."""
        whole = Plan()
        for index, line, given in reader.given():
            request = reader.request(given, line)
            try:
                await client.prepare(request)
            except SoraError as exc:
                # Everything prepare() raises is about this request; nothing was sent.
                raise BatchInputError(reader.path, line, str(exc)) from None
            # The whole input as if new: every item to create (_count, without its branches).
            whole.total += 1
            whole.to_create += 1
            price = client.estimate_credits(request)
            if price is None:
                whole.unpriced += 1
            else:
                whole.estimate += price
            if index % CHECKPOINT_EVERY == 0:
                await anyio.lowlevel.checkpoint()
        assert reader.fingerprint is not None
        return reader.fingerprint, whole

    def _open_journal(self, client: SoraClient, fingerprint: str) -> Journal:
        if not self.dry_run:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"--out {self.out}: cannot create the directory: {exc.strerror or exc}"
                ) from None
        journal = Journal.open(
            self.journal_path,
            input_fingerprint=fingerprint,
            provider=client.provider,
            base_url=client.settings.base_url,
            # Lines appended to the input are new items; every known item is compared.
            input_may_grow=True,
        )
        try:
            # Before any create: a re-run without --journal must find this journal.
            remember_journal(self.out, self.journal_path)
            if not self.dry_run:
                self._adopt_held(journal)
        except BaseException:
            journal.close()
            raise
        return journal

    def _adopt_held(self, journal: Journal) -> None:
        """Record the task ids an earlier run held outside the journal: adopted, not paid again."""
        held = list(read_held(self.out))
        for task in held:
            item = journal.get(task.index)
            if item is None or item.task_id == task.task_id:
                continue
            if item.task_id is None and item.prompt == task.prompt and item.state is _S.UNKNOWN:
                journal.record_created(task.index, task.task_id)
                self.console.warn(f"{self.console.label(task.index)} adopted task {task.task_id}")
            else:
                raise ConfigurationError(
                    f"{self.out / '.sora-held-task-ids.jsonl'} holds task {task.task_id} for "
                    f"item {task.index}, which the journal {self.journal_path} does not match "
                    f"(state {item.state.value}, task {item.task_id}); check that task by hand"
                )
        if held:
            forget_held(self.out)

    async def _register_new(self, reader: InputReader, fingerprint: str) -> Plan:
        """A new batch's plan: every item registered as pending, to create.

        Its requests are not built again: :meth:`_validate` built and checked every line of
        this file, and the file's fingerprint, checked at the end, proves it read the same
        bytes. A line of a file changed in between may be registered unchecked; the run then
        stops here (the file changed), and the next one checks every line again, compares it
        with the journal's and builds each job's request from the journal anew."""
        journal = self.journal
        assert journal is not None
        lines = self.console.lines
        request_json = RequestJsons(reader)
        count = 0
        chunk: list[tuple[int, str, str]] = []
        for index, line, given in reader.given():
            lines.append(line)
            text = request_json(line, given)  # first: it says what is wrong with a bad line
            chunk.append((index, given["prompt"], text))
            if len(chunk) >= REGISTER_CHUNK:
                journal.add_items(chunk, canonical=True)
                count += len(chunk)
                chunk = []
                await anyio.lowlevel.checkpoint()
        if chunk:
            journal.add_items(chunk, canonical=True)
            count += len(chunk)
        plan = Plan(total=count, to_create=count)
        self._check_plan(reader, fingerprint, plan, trusted=False)
        return plan

    async def _plan(
        self,
        client: SoraClient,
        reader: InputReader,
        fingerprint: str,
        *,
        compare: bool = False,
        priced: bool = True,
    ) -> Plan:
        plan = Plan()
        journal = self.journal
        # The same file with the same options as the journal's last run: its known items are
        # the ones recorded, so only their states are read (a 100,000-item resume plans in
        # seconds). Otherwise every known item is compared with its line.
        options_key = self._options_key()
        same_options = journal is not None and journal.meta.get(_OPTIONS_KEY) == options_key
        trusted = (
            not compare
            and same_options
            and journal is not None
            and journal.previous_input_fingerprint == fingerprint
        )
        # Lines appended to that file: its items are trusted too once the file's bytes up to
        # the last known item's line prove to be that file (checked before anything is added;
        # if they are not, the items are compared after all, in one more read).
        known = sum(journal.summary().values()) if journal is not None else 0
        appended = not compare and not trusted and same_options and 0 < known < self.total
        chunk: list[InputItem] = []
        for item in reader:
            chunk.append(item)
            last_known = appended and item.index == known - 1
            if len(chunk) >= REGISTER_CHUNK or last_known:
                whole = self._plan_chunk(
                    client,
                    chunk,
                    plan,
                    trusted=trusted or appended,
                    register=not appended,
                    priced=priced,
                )
                chunk = []
                if last_known:
                    assert journal is not None
                    if not whole or reader.fingerprint_so_far() != (
                        journal.previous_input_fingerprint
                    ):
                        # Not the file the journal knew, only grown: compare every item.
                        del self.console.lines[:]
                        return await self._plan(client, reader, fingerprint, compare=True)
                    trusted, appended = True, False
                await anyio.lowlevel.checkpoint()
        if chunk:
            self._plan_chunk(client, chunk, plan, trusted=trusted, priced=priced)
        self._check_plan(reader, fingerprint, plan, trusted=trusted)
        return plan

    def _check_plan(
        self, reader: InputReader, fingerprint: str, plan: Plan, *, trusted: bool
    ) -> None:
        """The plan's pass read the file validated, whole, and the journal holds no more."""
        journal = self.journal
        if reader.fingerprint != fingerprint or plan.total != self.total:
            raise BatchInputError(
                self.input_path,
                None,
                "the file changed while the batch was starting; leave it unchanged while "
                "a batch runs (a changed file needs another --out directory)",
            )
        if journal is not None:
            known = sum(journal.summary().values())
            if known > plan.total:
                raise JournalMismatchError(
                    f"{self.input_path}: the journal {self.journal_path} records {known} items, "
                    f"the file has {plan.total}: lines were removed. The batch belongs to the "
                    "input as it was (lines may only be appended); restore them, or use "
                    "another --out directory for a new batch."
                )
            if not trusted and not self.dry_run:
                journal.set_meta(_OPTIONS_KEY, self._options_key())

    def _options_key(self) -> str:
        return json.dumps(self.defaults, sort_keys=True, default=str)

    def _plan_chunk(
        self,
        client: SoraClient,
        chunk: list[InputItem],
        plan: Plan,
        *,
        trusted: bool,
        register: bool = True,
        priced: bool = True,
    ) -> bool:
        """Plan (and register, unless not ``register``) ``chunk``; whether the journal knew
        all of it."""
        journal = self.journal
        for item in chunk:
            self.console.lines.append(item.line)
        # One query for the chunk (the input's indexes are consecutive).
        first, last = chunk[0].index, chunk[-1].index
        known_states: dict[int, ItemState] = {}
        if journal is not None and trusted:
            known_states = journal.states(first, last + 1)
        elif journal is not None:
            for known in journal.rows(first, last + 1):
                # Before anything is added: a changed line refuses the run as it was.
                item = chunk[known.index - first]
                self._check_same_request(known, item, request_to_json(item.request))
                known_states[known.index] = known.state
        if journal is not None and register and not self.dry_run and len(known_states) < len(chunk):
            journal.add_items(
                (
                    (item.index, item.request.prompt, request_to_json(item.request))
                    for item in chunk
                    if item.index not in known_states
                ),
                canonical=True,
            )
        for item in chunk:
            state = known_states.get(item.index, _S.PENDING)
            self._count(client, plan, item.request, state, priced=priced)
        return len(known_states) == len(chunk)

    def _check_same_request(self, known: ItemRow, item: InputItem, request_json: str) -> None:
        if known.request_json == request_json and known.prompt == item.request.prompt:
            return
        then, now = json.loads(known.request_json), json.loads(request_json)
        changed = [
            f"{name}: {then.get(name)!r} then, {now.get(name)!r} now"
            for name in sorted(set(then) | set(now))
            if then.get(name) != now.get(name)
        ]
        if known.prompt != item.request.prompt:
            raise JournalMismatchError(
                f"{self.input_path}:{item.line}: this line changed since the journal "
                f"{self.journal_path} recorded item {item.index} "
                f"({one_line(known.prompt, 60)!r} then, {one_line(item.request.prompt, 60)!r} "
                "now): the batch belongs to the input as it was; lines may only be appended. "
                "Restore the line, or use another --out directory for a new batch."
            )
        raise JournalMismatchError(
            f"{self.input_path}:{item.line}: the journal {self.journal_path} recorded this item "
            f"with other request fields ({'; '.join(changed)}). Resume with the same options "
            "(--model, --aspect-ratio, --duration, --quality), or use another --out directory "
            "(or --journal PATH) for a new batch."
        )

    def _count(
        self,
        client: SoraClient,
        plan: Plan,
        request: VideoRequest,
        state: ItemState,
        *,
        priced: bool = True,
    ) -> None:
        plan.total += 1
        if self.policy.will_create(state):
            plan.to_create += 1
            plan.resubmit += state is _S.UNKNOWN
            plan.retry += state is _S.FAILED
            if not priced:
                return
            price = client.estimate_credits(request)
            if price is None:
                plan.unpriced += 1
            else:
                plan.estimate += price
        elif state in LIVE:
            plan.to_resume += 1
        elif state is _S.SUCCEEDED:
            plan.succeeded += 1
        elif state is _S.FAILED:
            plan.failed += 1
        else:  # unknown (and "creating", which opening the journal already turned unknown)
            plan.unknown += 1

    async def _check_cost(self, client: SoraClient, plan: Plan) -> None:
        loud = self.dry_run or not self.console.quiet
        if loud:
            self.console.say(
                f"batch: {plan.total} item(s) in {self.input_path}: {plan.to_create} to create, "
                f"{plan.to_resume} to resume, {plan.succeeded} already succeeded, "
                f"{plan.failed} failed, {plan.unknown} unknown"
                + (f" ({plan.retry} failed to create again)" if plan.retry else "")
            )
            if plan.to_create and client.provider == "freesora":
                self.console.say(f"videos: {_visibility(self.defaults.get('public'))}")
        priced = plan.unpriced == 0
        if plan.to_create == 0:
            estimate_text = "estimate: nothing to create, no credits to spend"
        elif priced:
            estimate_text = (
                f"estimate: {plan.estimate} credits for the {plan.to_create} item(s) to create "
                f"({client.provider} price table)"
            )
        elif plan.unpriced == plan.to_create:
            estimate_text = (
                f"estimate: {client.provider} publishes no prices; "
                f"{plan.to_create} item(s) to create"
            )
        else:
            estimate_text = (
                f"estimate: at least {plan.estimate} credits; {plan.unpriced} of the "
                f"{plan.to_create} item(s) to create have no published price"
            )
        balance = await self._balance(client) if plan.to_create else None
        if balance is not None:
            estimate_text += f"; balance {balance} credits"
        if loud:
            self.console.say(estimate_text)
        problems = []
        if plan.to_create and self.max_credits is not None:
            if not priced:
                problems.append(
                    f"--max-credits {self.max_credits}: {client.provider} publishes no prices, "
                    "so the spend cannot be capped; run without --max-credits"
                )
            elif plan.estimate > self.max_credits:
                problems.append(
                    f"--max-credits {self.max_credits}: the {plan.to_create} item(s) to create "
                    f"cost an estimated {plan.estimate} credits; raise the cap or split the input"
                )
        if plan.to_create and balance is not None and plan.estimate > balance:
            problems.append(
                f"cannot pay for this batch: the {plan.to_create} item(s) to create cost an "
                f"estimated {plan.estimate} credits and the balance is {balance}; top up or "
                "split the input"
            )
        if problems and self.dry_run:
            for problem in problems:
                self.console.error(f"error: a real run would be refused: {problem}")
            self.refused = True
        elif problems:
            raise ConfigurationError(problems[0])

    async def _balance(self, client: SoraClient) -> int | None:
        try:
            return (await client.credits()).left_credits
        except NotSupportedError:
            return None
        except AuthenticationError as exc:
            raise ConfigurationError(f"the API key was refused: {exc}") from None
        except SoraError as exc:
            self.console.warn(f"could not read the balance ({exc}); going on without the check")
            return None


def _visibility(public: bool | None) -> str:
    """What freesora does with the videos (it lists them publicly unless told otherwise)."""
    if public is None:
        return "public (freesora lists videos publicly unless told; --private keeps them unlisted)"
    if public:
        return "public (--public), unless a line of the input says otherwise"
    return "private (--private), unless a line of the input says otherwise"
