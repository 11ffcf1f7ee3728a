"""`llmgen batch`: a JSONL file of requests through the engine, batched, in input order, resumable.

The input is streamed one line at a time and read ahead only a bounded window, which is grouped by
generation plan and sorted by prompt length so each generate call runs one config with little
padding. Results go through an ordered writer that writes and flushes a record as soon as it and
every record before it are done, so the output is always a prefix of the finished file (plus at most
one truncated line after a kill). `--resume` relies on that: it drops a truncated last line and skips
as many input records of each id as the output already holds.

Two runs writing one file would interleave and truncate each other's records, so a run holds an
exclusive lock on its output file from before it reads or truncates it until it exits.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from llmgen import console
from llmgen.errors import UsageError

if TYPE_CHECKING:
    from llmgen.engine import Engine, Plan, Request
    from llmgen.options import Options, Session
    from llmgen.presets import ResolvedPreset

STDIO = "-"
WINDOW = 512  # records read ahead, grouped and sorted by length; bounds memory on files of any size
AUTO_CAP = {"cpu": 32, "cuda": 256}  # beyond these, wider batches stop paying on that device (bench/)
AUTO_CAP_OTHER = 32
MEMORY_SHARE = 0.5  # of the free memory, what one batch's cache and activations may take
CACHE_SIZE = 128  # resolved presets and plans kept; a file rarely mixes more configurations


@dataclass
class Item:
    """One non-blank input line: a request to run, or the error it already is."""

    seq: int
    line: int
    id: Any
    request: Request | None = None
    preset: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    named: bool = True  # False when the id is only the line number of a line too broken to name one

    @property
    def key(self) -> str:
        """The id as resume compares it: 5 and "5" are different ids."""
        return json.dumps(self.id)


@dataclass
class Summary:
    records: int = 0
    skipped: int = 0
    errors: int = 0
    earlier_errors: int = 0
    tokens: int = 0
    wall_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.errors + self.earlier_errors > 0

    def line(self) -> str:
        rate = self.tokens / self.wall_s if self.wall_s > 0 else 0.0
        parts = [f"{self.records} records"]
        if self.skipped:
            parts[0] += f" ({self.skipped} already done)"
        errors = f"{self.errors} error{'' if self.errors == 1 else 's'}"
        if self.earlier_errors:
            errors += f" (+{self.earlier_errors} in the earlier output)"
        parts += [errors, f"{self.tokens} tokens", f"{rate:.1f} tokens/s", f"{self.wall_s:.1f}s"]
        return "batch: " + " · ".join(parts)


def parse_batch_size(value: str) -> int | None:
    """`auto` (None: chosen from free memory) or a positive integer."""
    if value == "auto":
        return None
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise UsageError(f"--batch-size must be a positive integer or 'auto', got '{value}'")
    return size


# --- reading ---------------------------------------------------------------------------------------


def read(stream: IO[bytes], raw: bool = False) -> Iterator[Item]:
    """Every non-blank line of a JSONL byte stream as an Item; never raises on bad input.

    Blank lines are skipped (a trailing empty line is not a record). A duplicate id becomes an error
    for the later record, so an id names one output record and resume stays well defined.
    """
    first_line: dict[str, int] = {}
    seq = 0
    for number, data in enumerate(stream, 1):
        if not data.strip():
            continue
        item = parse_line(data, number, seq, raw)
        if item.named:
            previous = first_line.setdefault(item.key, number)
            if previous != number and item.error is None:
                item.error, item.request = f"duplicate id {item.key} (first on line {previous})", None
        yield item
        seq += 1


def parse_line(data: bytes, line: int, seq: int, raw: bool = False) -> Item:
    """One line to an Item; any problem becomes the Item's error, with the line number as its id."""
    from llmgen.engine import Request

    def bad(message: str, id: Any = None) -> Item:
        return Item(seq, line, line if id is None else id, error=message, named=id is not None)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return bad(f"line {line} is not valid UTF-8 (byte {exc.start + 1})")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return bad(f"invalid JSON: {exc.msg} (column {exc.colno})")
    except (ValueError, RecursionError) as exc:
        return bad(f"invalid JSON: {type(exc).__name__}")
    if not isinstance(obj, dict):
        return bad(f"a record is a JSON object, not {_json_type(obj)}")
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return bad("the record holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text")
    id = obj.get("id")
    if id is None:
        id = line
    elif isinstance(id, bool) or not isinstance(id, (str, int)):
        return bad(f"id must be a string or an integer, not {_json_type(id)}")
    problem = _check_fields(obj)
    if problem:
        return bad(problem, id)
    request = Request(
        prompt=obj.get("prompt"),
        messages=obj.get("messages"),
        system=obj.get("system"),
        raw=raw if obj.get("raw") is None else obj["raw"],
    )
    return Item(seq, line, id, request, obj.get("preset"), dict(obj.get("params") or {}))


def _check_fields(obj: dict[str, Any]) -> str | None:
    prompt, messages = obj.get("prompt"), obj.get("messages")
    if prompt is None and messages is None:
        return "the record has neither 'prompt' nor 'messages'"
    if prompt is not None and messages is not None:
        return "give 'prompt' or 'messages', not both"
    if prompt is not None and not isinstance(prompt, str):
        return f"'prompt' must be a string, not {_json_type(prompt)}"
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty list of {\"role\", \"content\"} objects"
        for i, message in enumerate(messages):
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str)):
                return f"messages[{i}] must be an object with string 'role' and 'content'"
    for key, kind, name in (("system", str, "a string"), ("preset", str, "a string"),
                            ("params", dict, "an object"), ("raw", bool, "true or false")):
        value = obj.get(key)
        if value is not None and not isinstance(value, kind):
            return f"'{key}' must be {name}, not {_json_type(value)}"
    return None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def count_records(path: Path) -> int:
    """Non-blank lines of a file, counted in chunks so memory stays flat: the progress bar's total."""
    with path.open("rb") as stream:
        return sum(1 for data in stream if data.strip())


# --- resuming and writing --------------------------------------------------------------------------


@dataclass
class Done:
    """What an earlier run's output already holds: how many records of each id, and how many failed."""

    ids: Counter[str] = field(default_factory=Counter)
    errors: int = 0


def recover(path: Path) -> Done:
    """Read an earlier run's output; cut a truncated last line (a killed run) off the file."""
    done = Done()
    good = 0
    with path.open("r+b") as stream:
        for number, data in enumerate(stream, 1):
            if not data.endswith(b"\n"):
                break
            try:
                record = json.loads(data)
                key = json.dumps(record["id"])
            except (ValueError, TypeError, KeyError):
                raise UsageError(
                    f"{path} line {number} is not an llmgen batch record", hint="is -o the right file?"
                ) from None
            done.ids[key] += 1
            done.errors += "error" in record
            good += len(data)
        stream.truncate(good)
    return done


class OrderedWriter:
    """Writes records in input order, each as soon as it and all before it are done, then flushes.

    Each record is one write of one line, so a kill leaves complete lines and at most one cut one.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.next = 0
        self.pending: dict[int, bytes | None] = {}

    def skip(self, seq: int) -> None:
        """A record an earlier run already wrote."""
        self._put(seq, None)

    def put(self, seq: int, record: dict[str, Any]) -> None:
        self._put(seq, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))

    def _put(self, seq: int, data: bytes | None) -> None:
        self.pending[seq] = data
        wrote = False
        while self.next in self.pending:
            data = self.pending.pop(self.next)
            if data is not None:
                self.stream.write(data)
                wrote = True
            self.next += 1
        if wrote:
            self.stream.flush()

    @property
    def waiting(self) -> int:
        return len(self.pending)


# --- generating ------------------------------------------------------------------------------------


@dataclass
class Job:
    """An Item ready to generate: its token ids and the plan of its group."""

    item: Item
    ids: list[int]
    plan: Plan


class Planner:
    """Plans per (preset, params), cached: records with the same settings share one GenerationConfig."""

    def __init__(self, session: Session, opts: Options) -> None:
        self.session = session
        self.opts = opts
        self.presets: OrderedDict[str, ResolvedPreset | UsageError] = OrderedDict()
        self.plans: OrderedDict[str, Plan | UsageError] = OrderedDict()
        self.equal: OrderedDict[str, Plan] = OrderedDict()

    def plan_for(self, item: Item) -> Plan:
        """The item's plan (layers: model, preset, record params, command line); UsageError if invalid."""
        key = json.dumps([item.preset, item.params], sort_keys=True)
        if key not in self.plans:
            self.plans[key] = plan = _capture(lambda: self._plan(item))
            if not isinstance(plan, UsageError) and not self.opts.quiet:
                for warning in plan.warnings:
                    console.warning(f"preset {plan.preset}: {warning}")
        return _cached(self.plans, key)

    def system_for(self, item: Item) -> str | None:
        """The record's system prompt, else --system, else its preset's (none when messages carry one)."""
        request = item.request
        if request.system is not None:
            return request.system
        if any(m["role"] == "system" for m in request.messages or []):
            return None
        if self.opts.system is not None:
            return self.opts.system
        return self._preset(item.preset).system if item.preset else self.session.preset.system

    def _plan(self, item: Item) -> Plan:
        from llmgen import settings

        params = dict(item.params)
        seed = params.pop("seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise UsageError(f"params: seed must be an integer, got {seed!r}")
        params = settings.imply_sampling(params)
        settings.check(params, "params")
        preset = self._preset(item.preset) if item.preset else None
        plan = self.session.plan(params, seed=self.opts.seed if self.opts.seed is not None else seed,
                                 preset=preset)
        # Records whose params the command line overrides end up equal: one Plan, so one group.
        same = json.dumps([plan.preset, plan.seed, plan.config.to_json_string()])
        self.equal.setdefault(same, plan)
        return _cached(self.equal, same)

    def _preset(self, name: str) -> ResolvedPreset:
        from llmgen import presets, settings

        def resolve() -> ResolvedPreset:
            preset = presets.resolve(name)
            settings.check(preset.generation, str(preset.chain[0].path))
            return preset

        if name not in self.presets:
            self.presets[name] = _capture(resolve)
        return _cached(self.presets, name)


def _capture(make: Callable[[], Any]) -> Any:
    """The value, or the UsageError to raise for every record that asks for it (odd params included)."""
    try:
        return make()
    except UsageError as exc:
        return exc
    except (ValueError, TypeError) as exc:
        return UsageError(f"invalid params: {exc}")


def _cached(cache: OrderedDict[str, Any], key: str) -> Any:
    cache.move_to_end(key)
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    value = cache[key]
    if isinstance(value, UsageError):
        raise value.with_traceback(None)  # each raise would otherwise grow one traceback, holding every frame
    return value


class Runner:
    """Turns windows of Items into output records through the engine, batching what can be batched."""

    def __init__(self, engine: Engine, planner: Planner, writer: OrderedWriter, batch_size: int | None,
                 on_record: Callable[[int], None], quiet: bool = False) -> None:
        self.engine = engine
        self.planner = planner
        self.writer = writer
        self.fixed_size = batch_size
        self.limit: int | None = None  # lowered after an out-of-memory error, for the rest of the run
        self.on_record = on_record
        self.quiet = quiet
        self.summary = Summary()

    def run(self, items: Iterable[Item], done: Done) -> Summary:
        seen: Counter[str] = Counter()
        window: list[Item] = []
        for item in items:
            seen[item.key] += 1
            if seen[item.key] <= done.ids[item.key]:
                self.writer.skip(item.seq)
                self.summary.skipped += 1
                self.on_record(0)
                continue
            window.append(item)
            if len(window) >= WINDOW:
                self._window(window)
                window = []
        self._window(window)
        return self.summary

    def _window(self, items: list[Item]) -> None:
        groups: dict[int, list[Job]] = {}
        for item in items:
            job = self._prepare(item)
            if job is not None:
                groups.setdefault(id(job.plan), []).append(job)
        for jobs in groups.values():
            plan = jobs[0].plan
            if not plan.batches:
                for job in jobs:
                    self._generate([job])
                continue
            solo = [j for j in jobs if not self._fits_in_batch(j)]
            jobs = sorted((j for j in jobs if self._fits_in_batch(j)), key=lambda j: len(j.ids))
            start = 0
            while start < len(jobs):
                size = self._batch_size(jobs[start:], plan)
                self._generate(jobs[start:start + size])
                start += size
            for job in solo:
                self._generate([job])

    def _prepare(self, item: Item) -> Job | None:
        """Plan and encode an item; a problem becomes its error record now."""
        from dataclasses import replace

        if item.error is not None:
            self._fail(item, item.error)
            return None
        try:
            plan = self.planner.plan_for(item)
            request = replace(item.request, system=self.planner.system_for(item))
            ids = _encode(self.engine, request)
            limit = self.engine.context_length
            if limit is not None and len(ids) >= limit:
                raise UsageError(f"the prompt is {len(ids)} tokens, longer than the model's context ({limit})")
        except UsageError as exc:
            self._fail(item, f"{exc} ({exc.hint})" if exc.hint else str(exc))
            return None
        return Job(item, ids, plan)

    def _fits_in_batch(self, job: Job) -> bool:
        """A prompt near the context limit shortens max_new_tokens; it runs alone so its mates keep theirs."""
        limit = self.engine.context_length
        return limit is None or len(job.ids) + (job.plan.config.max_new_tokens or 0) <= limit

    def _batch_size(self, jobs: list[Job], plan: Plan) -> int:
        """--batch-size, else as many as the memory free now holds (within the device's useful width)."""
        size = self.fixed_size or auto_batch_size(self.engine, plan, len(jobs[-1].ids))
        return max(1, min(size, self.limit or size, len(jobs)))

    def _generate(self, jobs: list[Job]) -> None:
        from llmgen.engine import out_of_memory, release_memory

        try:
            results = self.engine.generate_batch([j.ids for j in jobs], jobs[0].plan)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - one batch's failure becomes its records' errors
            if not out_of_memory(exc):
                message = str(exc) if isinstance(exc, UsageError) else f"generation failed: {type(exc).__name__}: {exc}"
                for job in jobs:
                    self._fail(job.item, message)
                return
            release_memory()
            if len(jobs) == 1:
                self._fail(jobs[0].item, "out of memory, even alone")
                return
            self.limit = min(self.limit or len(jobs), len(jobs) // 2)
            if not self.quiet:
                console.warning(f"out of memory with {len(jobs)} records in a batch; retrying with {self.limit}")
            start = 0
            while start < len(jobs):  # the limit may fall further inside; later chunks follow it
                size = self.limit
                self._generate(jobs[start:start + size])
                start += size
            return
        for job, result in zip(jobs, results):
            self._succeed(job, result)

    def _succeed(self, job: Job, result: Any) -> None:
        record: dict[str, Any] = {"id": job.item.id, "line": job.item.line}
        if result.texts:
            record.update(texts=result.texts, finish_reason=result.finish_reasons)
        else:
            record.update(text=result.text, finish_reason=result.finish_reason)
        record.update(
            usage={"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
            preset=job.plan.preset,
        )
        self.summary.records += 1
        self.summary.tokens += result.completion_tokens
        self.writer.put(job.item.seq, record)
        self.on_record(result.completion_tokens)

    def _fail(self, item: Item, message: str) -> None:
        self.summary.records += 1
        self.summary.errors += 1
        if not self.quiet:
            console.warning(f"line {item.line} (id {item.key}): {message}")
        self.writer.put(item.seq, {"id": item.id, "line": item.line, "error": message})
        self.on_record(0)


def _encode(engine: Engine, request: Request) -> list[int]:
    """Prompt token ids; whatever the tokenizer or chat template refuses is this record's UsageError."""
    try:
        return engine.encode(request)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - templates raise anything on odd messages (roles, order)
        raise UsageError(f"cannot apply the chat template or tokenizer: {type(exc).__name__}: {exc}") from None


def auto_batch_size(engine: Engine, plan: Plan, prompt_tokens: int) -> int:
    """Requests per generate call that fit in a share of the free memory, capped where width stops paying.

    Per row: the KV cache for prompt plus answer, and the prefill's activations, attention scores and
    logits. An estimate errs high; an out-of-memory error still halves the batch.
    """
    model = engine.model
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    element = model.dtype.itemsize
    layers = getattr(config, "num_hidden_layers", 32)
    hidden = getattr(config, "hidden_size", 4096)
    heads = getattr(config, "num_attention_heads", 32)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    intermediate = getattr(config, "intermediate_size", 4 * hidden)
    vocab = getattr(config, "vocab_size", 32000)
    tokens = prompt_tokens + (plan.config.max_new_tokens or 0)
    cache = 2 * layers * kv_heads * head_dim * tokens * element
    prefill = prompt_tokens * (4 * hidden + 2 * intermediate + vocab) * element
    prefill += heads * prompt_tokens * prompt_tokens * element
    per_request = (cache + prefill) * plan.rows_per_request
    fits = int(engine.free_memory() * MEMORY_SHARE // max(per_request, 1))
    device = str(model.device).split(":")[0]
    return max(1, min(fits, AUTO_CAP.get(device, AUTO_CAP_OTHER)))


# --- the command ---------------------------------------------------------------------------------


def run_command(opts: Options, input: str, output: str, batch_size: str, resume: bool) -> Summary:
    """`llmgen batch`: check the files, load the model, run every record, report. Exit code is the caller's."""
    from llmgen.options import Session

    size = parse_batch_size(batch_size)
    source = _input_path(input)
    target = _output_path(output, source, resume)
    with ExitStack() as stack:
        if target is not None:
            stack.enter_context(lock_output(target, output, quiet=opts.quiet))
            _refuse_overwrite(target, output, resume)
        done = recover(target) if target is not None and resume and target.exists() else Done()
        session = Session.open(opts, lambda d: d.preset)
        total = count_records(source) if source is not None else None
        start = time.perf_counter()
        stream_in = stack.enter_context(source.open("rb")) if source is not None else sys.stdin.buffer
        if target is None:
            stream_out: IO[bytes] = sys.stdout.buffer
        else:
            stream_out = stack.enter_context(target.open("ab" if resume else "wb"))
        advance = stack.enter_context(_progress(total, show=console.err.is_terminal and not opts.quiet))
        try:
            summary = process(session, opts, stream_in, stream_out, size, done, advance)
        except KeyboardInterrupt:
            if target is not None:
                console.note(f"interrupted; '--resume' continues {output} where it stopped")
            raise
    summary.wall_s = time.perf_counter() - start
    if not opts.quiet:
        console.note(summary.line())
    return summary


def process(session: Session, opts: Options, stream_in: IO[bytes], stream_out: IO[bytes], batch_size: int | None,
            done: Done | None = None, advance: Callable[[int], None] = lambda tokens: None) -> Summary:
    """Every record of `stream_in` to `stream_out` with a session already open (the command's core)."""
    done = done or Done()
    runner = Runner(session.engine, Planner(session, opts), OrderedWriter(stream_out), batch_size, advance,
                    quiet=opts.quiet)
    runner.summary.earlier_errors = done.errors
    return runner.run(read(stream_in, raw=opts.raw), done)


def _input_path(input: str) -> Path | None:
    if input == STDIO:
        return None
    path = Path(input).expanduser()
    if not path.is_file():
        raise UsageError(f"input file not found: {input}")
    return path


def _output_path(output: str, source: Path | None, resume: bool) -> Path | None:
    """The output file, refusing what would lose work: resuming stdout, overwriting the input or a result."""
    if output == STDIO:
        if resume:
            raise UsageError("--resume needs an output file", hint="give one with -o OUT.jsonl")
        return None
    path = Path(output).expanduser()
    if source is not None and path.exists() and os.path.samefile(path, source):
        raise UsageError("the output file is the input file")
    if not path.parent.is_dir():
        raise UsageError(f"no such directory for the output: {path.parent}")
    return path


def _refuse_overwrite(path: Path, output: str, resume: bool) -> None:
    """Checked under the lock: another run may have written the file until a moment ago."""
    if path.exists() and path.stat().st_size > 0 and not resume:
        raise UsageError(f"{output} already exists", hint="pass --resume to continue it, or remove it first")


@contextmanager
def lock_output(path: Path, output: str, quiet: bool = False) -> Iterator[None]:
    """Hold `.NAME.lock` beside the output, locked and holding our pid, while the run writes the output.

    A second run refuses at once (UsageError naming the holder's pid). The file is removed at exit; a
    killed run's stays, unlocked, and is reused. Devices and pipes (`-o /dev/null`) are not locked.
    """
    real = path.resolve()
    if real.exists() and not real.is_file():
        yield
        return
    lock = real.with_name(f".{real.name}.lock")
    try:
        fd = _take_lock(lock, output)
    except OSError as exc:
        if not quiet:
            console.warning(f"cannot lock {output} ({exc.strerror}); make sure no other run writes to it")
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            os.unlink(lock)  # before unlocking: whoever waits on this inode then sees it is gone
        except OSError:
            pass
        os.close(fd)


def _take_lock(lock: Path, output: str) -> int:
    """The locked lock file's descriptor; UsageError if another process holds it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd) if exc.errno in (errno.EAGAIN, errno.EACCES) else None
            os.close(fd)
            if holder is None:
                raise
            raise UsageError(f"{output} is being written by another llmgen batch ({holder})",
                             hint="wait for it to finish, or write to another file") from None
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)  # the holder removed it between our open and our lock: lock the new one


def _holder(fd: int) -> str:
    """The holder of a locked lock file as "pid N".

    It writes its pid just after locking, over what a killed run may have left: wait a moment for a
    pid that is alive.
    """
    deadline = time.monotonic() + 2
    while True:
        data = os.pread(fd, 32, 0).strip()
        if data.isdigit() and _alive(int(data)):
            return f"pid {int(data)}"
        if time.monotonic() > deadline:
            return "pid unknown"
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # alive, but another user's
    return True


@contextmanager
def _progress(total: int | None, show: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (records, tokens/s, ETA) when it is a terminal; else a no-op."""
    if not show:
        yield lambda tokens: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    start = time.perf_counter()
    tokens = 0
    with Progress(
        TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), console=console.err, transient=True,
    ) as progress:
        task = progress.add_task("batch", total=total, rate="")

        def advance(new_tokens: int) -> None:
            nonlocal tokens
            tokens += new_tokens
            elapsed = time.perf_counter() - start
            progress.update(task, advance=1, rate=f"{tokens / elapsed:.1f} tokens/s" if elapsed > 0 else "")

        yield advance
