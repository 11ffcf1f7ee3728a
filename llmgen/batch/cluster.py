"""`llmgen batch --engine ray`: the same records, order, output and resume, with Ray actors running the blocks.

Ray only replaces who runs a block of records. This process (the driver) reads the input, skips what an
earlier run wrote, sorts each window by length and cuts it into blocks of a worker's batch size, and writes
the results through the same ordered writer as the local engine. Each actor (`Worker`) loads llmgen's own
Engine once and runs many blocks through the local `Runner`, so every preset and strategy behaves the same.
Ray restarts a dead actor and retries its block once; a block that fails again is split into single
records, and a record that fails twice alone becomes an error record. Ray is imported only here, lazily.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from llmgen import console
from llmgen.batch.records import Item, read
from llmgen.batch.resume import Done, OrderedWriter
from llmgen.batch.runner import AUTO_CAP, AUTO_CAP_OTHER, Planner, Runner, Summary, windows
from llmgen.errors import LlmgenError, UsageError, explain

if TYPE_CHECKING:
    from llmgen.options import Options

ENGINES = ("local", "ray")
INSTALL_HINT = "pip install 'llmgen[ray]'"
RESTARTS = -1  # a killed worker always comes back (Ray restarts the actor); its block is retried once
CONNECT_TIMEOUT_S = 10
BLOCK_RETRIES = 1  # Ray's retries of a block whose worker died; then it is split, and a lone record fails

Outcome = list[tuple[int, dict[str, Any], int]]  # (seq, output record, completion tokens) for each record of a block


@dataclass
class ClusterOptions:
    """Where and how wide `--engine ray` runs: `--ray-address`, `--workers`, `--cpus-per-worker`,
    `--gpus-per-worker`."""

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None


def cluster_options(engine: str, address: str | None, workers: int | None, cpus_per_worker: float,
                    gpus_per_worker: float | None) -> ClusterOptions | None:
    """The `--engine` flags checked: None for the local engine, which takes none of the Ray flags."""
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got '{engine}'")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be a positive integer, got {workers}")
    if cpus_per_worker <= 0 or (gpus_per_worker or 0) < 0:
        raise UsageError("--cpus-per-worker must be above 0 and --gpus-per-worker at least 0")
    given = [flag for flag, value in (("--ray-address", address), ("--workers", workers),
                                      ("--cpus-per-worker", cpus_per_worker != 1.0),
                                      ("--gpus-per-worker", gpus_per_worker)) if value]
    if engine == "local":
        if given:
            raise UsageError(f"{given[0]} needs --engine ray")
        return None
    return ClusterOptions(address, workers, cpus_per_worker, gpus_per_worker)


def require_ray() -> None:
    """Ray is an optional extra: without it, one line saying what to install (before anything loads)."""
    if importlib.util.find_spec("ray") is None:
        raise UsageError("--engine ray needs Ray, which is not installed", hint=INSTALL_HINT)


class Worker:
    """One Ray actor: llmgen's Engine loaded once, running blocks of records through the local Runner.

    A failure to load is kept and reported by `ready`, so the driver can say which model and why.
    """

    def __init__(self, opts: Options, threads: int, batch_size: int | None) -> None:
        import torch

        torch.set_num_threads(threads)  # Ray's CPU allotment; more threads than cores make workers crawl
        self.problem: tuple[int, str, str | None] | None = None
        self.outcome: Outcome = []
        try:
            from llmgen.options import Session

            session = Session.open(opts, lambda d: d.preset)
        except Exception as exc:  # noqa: BLE001 - reported by the driver as this worker's load failure
            error = explain(exc)
            self.problem = (error.exit_code, str(error), error.hint)
            return
        self.device = str(session.engine.model.device).split(":")[0]
        self.runner = Runner(session.engine, Planner(session, opts), self, batch_size, self._tokens, quiet=True)

    def ready(self) -> dict[str, Any]:
        """Where this worker runs and what it loaded, or why it could not."""
        import ray

        info: dict[str, Any] = {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()[:8]}
        if self.problem is not None:
            return {**info, "problem": self.problem}
        return {**info, "device": self.device}

    def run(self, block: list[Item]) -> Outcome:
        """A block of records, as the local engine runs a window: grouped by plan, sorted, batched."""
        self.outcome = []
        self.runner.window(block)
        return self.outcome

    def put(self, seq: int, record: dict[str, Any]) -> None:
        """The Runner's writer: collect the block's records for the driver, which writes them in order."""
        self.outcome.append((seq, record, 0))

    def _tokens(self, tokens: int) -> None:
        seq, record, _ = self.outcome[-1]
        self.outcome[-1] = (seq, record, tokens)


@contextmanager
def started(opts: Options, cluster: ClusterOptions, batch_size: int | None) -> Iterator[Pool]:
    """Join the cluster (or start a local Ray for the run), start the workers, and stop them all afterwards."""
    import ray

    from llmgen.options import Session

    Session.settle(opts, lambda d: d.preset)  # a bad preset or flag fails before Ray starts
    address = cluster.address or os.environ.get("RAY_ADDRESS")
    own = not ray.is_initialized()
    actors: list[Any] = []
    # Ray prints its own notices (a task retried, a worker died) on sys.stdout, where results may go.
    with open(os.devnull, "w") if opts.quiet else nullcontext(sys.stderr) as notices, redirect_stdout(notices):
        if own:
            _init(ray, address, cluster)
        try:
            actors, infos = _start_workers(ray, opts, cluster, batch_size)
            yield Pool(ray, actors, infos, batch_size, quiet=opts.quiet)
        finally:
            if own:
                ray.shutdown()  # stops the workers with it
            else:
                for actor in actors:
                    ray.kill(actor, no_restart=True)


def _init(ray: Any, address: str | None, cluster: ClusterOptions) -> None:
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}
    if address is None:
        wanted = (cluster.workers or 0) * cluster.cpus_per_worker
        if wanted > (os.cpu_count() or 1):
            kwargs["num_cpus"] = int(wanted + 0.999)  # the workers asked for, even on fewer cores
        ray.init(address="local", **kwargs)
        return
    hint = "check --ray-address / RAY_ADDRESS, or leave both out to start a local Ray"
    _reachable(address, hint)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot join the Ray cluster at {address}: {exc}", hint=hint) from None


def _reachable(address: str, hint: str) -> None:
    """A HOST:PORT nobody answers on fails now: Ray itself would retry it for minutes, logging each try."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # `auto`, `ray://...`: Ray's own lookup and errors
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"cannot join the Ray cluster at {address}: {exc.strerror or exc}", hint=hint) from None


def _start_workers(ray: Any, opts: Options, cluster: ClusterOptions, batch_size: int | None
                   ) -> tuple[list[Any], list[dict[str, Any]]]:
    """As many workers as asked (else as the cluster's resources allow), each with the model loaded."""
    resources = ray.cluster_resources()
    cpus_there, gpus_there = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    cpus = cluster.cpus_per_worker
    gpus = cluster.gpus_per_worker if cluster.gpus_per_worker is not None else (1.0 if gpus_there >= 1 else 0.0)
    fit = int(cpus_there // cpus)
    if gpus:
        fit = min(fit, int(gpus_there // gpus))
    workers = cluster.workers or fit
    if workers < 1 or workers > fit:
        raise UsageError(
            f"the Ray cluster has {cpus_there:g} CPUs and {gpus_there:g} GPUs: not enough for "
            f"{workers or 1} worker(s) of {cpus:g} CPU and {gpus:g} GPU each",
            hint="lower --workers, --cpus-per-worker or --gpus-per-worker",
        )
    remote = ray.remote(Worker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=RESTARTS,
                                        max_task_retries=BLOCK_RETRIES)
    threads = max(1, int(cpus))
    actors = [remote.remote(opts, threads, batch_size) for _ in range(workers)]
    infos = ray.get([actor.ready.remote() for actor in actors])
    for info in infos:
        if "problem" in info:
            for actor in actors:
                ray.kill(actor, no_restart=True)
            code, message, hint = info["problem"]
            model = opts.model or "the configured model"
            error = UsageError if code == UsageError.exit_code else LlmgenError
            raise error(f"a Ray worker (node {info['node']}) cannot load {model}: {message}", hint=hint)
    return actors, infos


class Pool:
    """Hands blocks to idle workers and writes what comes back in input order; Ray does the rest."""

    def __init__(self, ray: Any, actors: list[Any], infos: list[dict[str, Any]], batch_size: int | None,
                 quiet: bool) -> None:
        self.ray = ray
        self.actors = actors
        self.infos = infos
        device = self.infos[0]["device"]
        self.block_size = batch_size or AUTO_CAP.get(device, AUTO_CAP_OTHER)
        self.quiet = quiet
        self.idle = deque(range(len(actors)))
        self.queue: deque[list[Item]] = deque()
        self.running: dict[Any, tuple[int, list[Item]]] = {}

    @property
    def pids(self) -> list[int]:
        """The workers' process ids at start (tests kill one)."""
        return [info["pid"] for info in self.infos]

    def process(self, stream_in: IO[bytes], stream_out: IO[bytes], raw: bool, done: Done,
                advance: Callable[[int], None]) -> Summary:
        """Every record of `stream_in` to `stream_out`, as `runner.process` does, the blocks run by the workers."""
        self.writer = OrderedWriter(stream_out)
        self.advance = advance
        self.summary = Summary(earlier_errors=done.errors, workers={f"w{i}": 0 for i in range(len(self.actors))})
        for window in windows(read(stream_in, raw=raw), done, self.writer, self.summary, advance):
            share = -(-len(window) // len(self.actors))  # a short window still keeps every worker busy
            self.queue.extend(blocks(window, min(self.block_size, share)))
            self._dispatch()
            while len(self.queue) > len(self.actors):  # read on when the workers are nearly out of blocks
                self._collect()
        while self.queue or self.running:
            self._collect()
        return self.summary

    def _dispatch(self) -> None:
        while self.idle and self.queue:
            index = self.idle.popleft()
            block = self.queue.popleft()
            self.running[self.actors[index].run.remote(block)] = (index, block)

    def _collect(self) -> None:
        """Wait for one block; write its records, or split it when its worker died with it."""
        (ref,), _ = self.ray.wait(list(self.running), num_returns=1)
        index, block = self.running.pop(ref)
        self.idle.append(index)
        try:
            outcome = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            if len(block) > 1:
                self.queue.extendleft([item] for item in reversed(block))
            else:
                item = block[0]
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                outcome = [(item.seq, {"id": item.id, "line": item.line,
                                       "error": f"the worker running this record failed twice: {reason}"}, 0)]
                self._write(index, outcome)
        else:
            self._write(index, outcome)
        self._dispatch()

    def _write(self, index: int, outcome: Outcome) -> None:
        for seq, record, tokens in outcome:
            self.summary.records += 1
            self.summary.tokens += tokens
            self.summary.workers[f"w{index}"] += 1
            if "error" in record:
                self.summary.errors += 1
                if not self.quiet:
                    console.warning(f"line {record['line']} (id {json.dumps(record['id'])}): {record['error']}")
            self.writer.put(seq, record)
            self.advance(tokens)


def blocks(window: list[Item], size: int) -> list[list[Item]]:
    """A window cut into blocks of `size`, sorted by settings then prompt length, so a block batches well.

    Only the workers hold a tokenizer: characters stand in for tokens here, and each worker sorts its
    block by token count as the local engine sorts its window.
    """
    def key(item: Item) -> tuple[str, int]:
        request = item.request
        text = "" if request is None else request.prompt or json.dumps(request.messages, ensure_ascii=False)
        return json.dumps([item.preset, item.params], sort_keys=True), len(text)

    ordered = sorted(window, key=key)
    return [ordered[start:start + size] for start in range(0, len(ordered), size)]
