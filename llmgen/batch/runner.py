"""Running `llmgen batch` records through the engine: plans per settings, batches, out-of-memory halving.

Records are read ahead a bounded window, grouped by generation plan and sorted by prompt length, so
each generate call runs one config with little padding and memory stays flat on files of any size.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from llmgen import console
from llmgen.batch.records import Item, read
from llmgen.batch.resume import Done, OrderedWriter
from llmgen.errors import UsageError, explain

if TYPE_CHECKING:
    from llmgen.engine import Engine, Plan, Request
    from llmgen.options import Options, Session
    from llmgen.presets import ResolvedPreset

WINDOW = 512  # records read ahead, grouped and sorted by length; bounds memory on files of any size
AUTO_CAP = {"cpu": 32, "cuda": 256}  # beyond these, wider batches stop paying on that device (bench/)
AUTO_CAP_OTHER = 32
MEMORY_SHARE = 0.5  # of the free memory, what one batch's cache and activations may take
CACHE_SIZE = 128  # resolved presets and plans kept; a file rarely mixes more configurations


@dataclass
class Summary:
    records: int = 0
    skipped: int = 0
    errors: int = 0
    earlier_errors: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    workers: dict[str, int] = field(default_factory=dict)  # records each Ray worker ran (--engine ray)

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
        if self.workers and self.wall_s > 0:
            each = ", ".join(f"{n / self.wall_s:.2f}" for n in self.workers.values())
            parts.append(f"{len(self.workers)} worker{'' if len(self.workers) == 1 else 's'} ({each} records/s each)")
        return "batch: " + " · ".join(parts)


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
        key = json.dumps([item.preset, item.params, item.constraint], sort_keys=True)
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
        from llmgen import constraints, settings

        params = dict(item.params)
        seed = params.pop("seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise UsageError(f"params: seed must be an integer, got {seed!r}")
        params = settings.imply_sampling(params)
        settings.check(params, "params")
        constraint = constraints.from_mapping(item.constraint, "record")
        if constraint is not None:
            params[constraints.KEY] = constraint
        preset = self._preset(item.preset) if item.preset else None
        plan = self.session.plan(params, seed=self.opts.seed if self.opts.seed is not None else seed,
                                 preset=preset)
        # Records whose params the command line overrides end up equal: one Plan, so one group.
        same = json.dumps([plan.preset, plan.seed, plan.config.to_json_string(), repr(plan.constraint)])
        self.equal.setdefault(same, plan)
        return _cached(self.equal, same)

    def _preset(self, name: str) -> ResolvedPreset:
        from llmgen import presets

        if name not in self.presets:
            self.presets[name] = _capture(lambda: presets.load(name))
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
        for window in windows(items, done, self.writer, self.summary, self.on_record):
            self.window(window)
        return self.summary

    def window(self, items: list[Item]) -> None:
        """Generate a window (or a block of one) of records, grouped by plan, sorted by length, batched."""
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
            self.engine.check_fits(len(ids))
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
                error = explain(exc)
                message = str(error) if isinstance(error, UsageError) else f"generation failed: {error}"
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
        record.update(usage=result.usage, preset=job.plan.preset)
        if result.constraint is not None:
            record["constraint"] = result.constraint
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


def windows(items: Iterable[Item], done: Done, writer: OrderedWriter, summary: Summary,
            on_record: Callable[[int], None]) -> Iterator[list[Item]]:
    """The records still to run, WINDOW at a time; those an earlier run wrote are skipped (and counted) here."""
    seen: Counter[str] = Counter()
    window: list[Item] = []
    for item in items:
        seen[item.key] += 1
        if seen[item.key] <= done.ids[item.key]:
            writer.skip(item.seq)
            summary.skipped += 1
            on_record(0)
            continue
        window.append(item)
        if len(window) >= WINDOW:
            yield window
            window = []
    if window:
        yield window


def _encode(engine: Engine, request: Request) -> list[int]:
    """Prompt token ids; whatever the tokenizer or chat template refuses is this record's UsageError."""
    try:
        return engine.encode(request)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - templates raise anything on odd messages (roles, order)
        raise UsageError(f"cannot apply the chat template or tokenizer: {explain(exc)}") from None


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


def process(session: Session, opts: Options, stream_in: IO[bytes], stream_out: IO[bytes], batch_size: int | None,
            done: Done | None = None, advance: Callable[[int], None] = lambda tokens: None) -> Summary:
    """Every record of `stream_in` to `stream_out` with a session already open (the command's core)."""
    done = done or Done()
    runner = Runner(session.engine, Planner(session, opts), OrderedWriter(stream_out), batch_size, advance,
                    quiet=opts.quiet)
    runner.summary.earlier_errors = done.errors
    return runner.run(read(stream_in, raw=opts.raw), done)
