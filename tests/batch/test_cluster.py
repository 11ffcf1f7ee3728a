"""`llmgen batch --engine ray` on a real local Ray (2 workers of 1 CPU, the built-in model): the same bytes as
the local engine, error records, a worker killed mid-run, the driver killed and resumed.

One Ray and one pool of two workers serve the module (each worker start loads torch and the model: the
cost of these tests); the killed driver is a real `llmgen batch --engine ray` joining that Ray by address.
Select with `-m ray`.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from llmgen.batch.cluster import ClusterOptions, started
from llmgen.batch.resume import Done, recover
from llmgen.batch.runner import Summary
from llmgen.cli import main
from llmgen.options import Options
from tests.batch.batch_helpers import jsonl, prompts, records, run_bytes
from tests.conftest import LLMGEN

pytestmark = pytest.mark.ray

TOKENS = 4
SIZE = 2  # records per block and per generate call, here and in the local runs compared with


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module; the runs join it (as `--ray-address` does). 4 logical CPUs on 2 cores:
    the module's two workers, and the killed driver's one."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, log_to_driver=False, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(ray_address):
    """Two workers of 1 CPU, each with the built-in model loaded once, serving every test's blocks."""
    with started(Options(max_new_tokens=TOKENS, quiet=True), ClusterOptions(workers=2), SIZE) as pool:
        yield pool


def run_pool(pool, source: Path, out: Path, done: Done | None = None) -> Summary:
    """What `llmgen batch --engine ray` does once its workers are up (`run_command` starts its own)."""
    with source.open("rb") as stream_in, out.open("ab") as stream_out:
        return pool.process(stream_in, stream_out, False, done or Done(), lambda tokens: None)


def wait_for_lines(path: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {count} lines")


def test_ray_output_equals_the_local_engines_byte_for_byte_error_records_included(
        pool, builtin_engine, tmp_path) -> None:
    data = jsonl(*prompts(6), b"not json", {"id": "p", "prompt": "hi", "preset": "nope"},
                 {"id": "q", "prompt": "hi", "params": {"max_new_tokens": -1}})
    expected, local = run_bytes(builtin_engine, data, batch_size=SIZE, max_new_tokens=TOKENS)
    (tmp_path / "in.jsonl").write_bytes(data)
    summary = run_pool(pool, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes() == expected
    errors = [r for r in records(expected) if "error" in r]
    assert [r["line"] for r in errors] == [7, 8, 9] and "nope" in errors[1]["error"]
    assert (summary.records, summary.errors, summary.tokens) == (9, 3, local.tokens)
    assert len(summary.workers) == 2 and sum(summary.workers.values()) == 9


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(pool, builtin_engine, tmp_path) -> None:
    data = jsonl(*prompts(12))
    expected, _ = run_bytes(builtin_engine, data, batch_size=SIZE, max_new_tokens=TOKENS)
    (tmp_path / "in.jsonl").write_bytes(data)
    out = tmp_path / "out.jsonl"
    victim, killed = pool.pids[0], []

    def kill() -> None:
        wait_for_lines(out, 2)
        os.kill(victim, signal.SIGKILL)
        killed.append(out.read_bytes().count(b"\n"))

    killer = threading.Thread(target=kill)
    killer.start()
    summary = run_pool(pool, tmp_path / "in.jsonl", out)
    killer.join()
    assert killed and killed[0] < 12, "the worker was killed after the run, not during it"
    assert out.read_bytes() == expected
    assert (summary.records, summary.errors) == (12, 0)


def test_resume_after_the_driver_is_killed_sends_only_the_rest(pool, builtin_engine, ray_address, tmp_path) -> None:
    data = jsonl(*prompts(12))
    expected, _ = run_bytes(builtin_engine, data, batch_size=SIZE, max_new_tokens=TOKENS)
    (tmp_path / "in.jsonl").write_bytes(data)
    out = tmp_path / "out.jsonl"
    args = [str(LLMGEN), "batch", str(tmp_path / "in.jsonl"), "-o", str(out), "-n", str(TOKENS), "-q",
            "--batch-size", str(SIZE), "--engine", "ray", "--ray-address", ray_address, "--workers", "1"]
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_lines(out, 3)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    kept = out.read_bytes().count(b"\n")
    assert 3 <= kept < 12, "the driver was killed too late to test resume"
    summary = run_pool(pool, tmp_path / "in.jsonl", out, recover(out))
    assert out.read_bytes() == expected
    assert summary.skipped >= kept and summary.skipped + sum(summary.workers.values()) == 12


def main_exit(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`llmgen ARGS` through the CLI's own error boundary, in-process: exit code, stdout, stderr."""
    monkeypatch.setattr("sys.argv", ["llmgen", *args])
    with pytest.raises(SystemExit) as exit:
        main()
    out, err = capsys.readouterr()
    return exit.value.code, out, err


def test_without_ray_the_engine_says_what_to_install_and_ray_flags_need_it(monkeypatch, capsys, tmp_path) -> None:
    (tmp_path / "in.jsonl").write_bytes(jsonl(*prompts(1)))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    code, out, err = main_exit(monkeypatch, capsys, "batch", str(tmp_path / "in.jsonl"), "--engine", "ray")
    assert (code, out) == (2, "") and "--engine ray needs Ray" in err and "pip install 'llmgen[ray]'" in err
    code, out, err = main_exit(monkeypatch, capsys, "batch", str(tmp_path / "in.jsonl"), "--workers", "2")
    assert (code, out) == (2, "") and "--workers needs --engine ray" in err
