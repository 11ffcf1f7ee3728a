"""Fuzz the input boundary: hypothesis-made flag values, `--set` pairs, preset files and JSONL records through the
CLI's parsing and planning layer in this process, with no model loaded. Every case must end in exit 0 or 2 with a
one-line message (plus an optional hint), or reach the model load with input that was accepted; anything else (a
traceback, exit 1, several lines) is counted and the first few are printed. Goal: zero.

    python bench/fuzz_inputs.py [--cases N]     (default 10,000, spread over the four kinds)
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="llmgen-fuzz-config-")

from llmgen import cli, options  # noqa: E402 - the environment above comes first
from llmgen.batch.records import parse_line  # noqa: E402
from llmgen.errors import UsageError  # noqa: E402


class ModelLoad(BaseException):
    """Raised instead of loading a model: the input got through every check made before the load."""


def _no_load(*args, **kwargs):
    raise ModelLoad


options.ModelOptions.load = _no_load  # the harness's one stand-in: generation is not what is fuzzed here

FLAGS = ["-n", "--max-new-tokens", "--temperature", "--top-p", "--top-k", "--num-beams", "--num-return-sequences",
         "--seed", "--stop", "--set", "-p", "--preset", "--quant", "--dtype", "--device", "--threads", "--cache",
         "--json-schema", "--regex", "--choice", "--grammar", "-m", "--system", "--presets", "--batch-size"]
KEYS = ["temperature", "top_p", "top_k", "max_new_tokens", "num_beams", "do_sample", "repetition_penalty",
        "penalty_alpha", "dola_layers", "num_beam_groups", "diversity_penalty", "stop_strings", "min_p",
        "no_repeat_ngram_size", "bad_words_ids", "cache_implementation", "cache_config", "constraint", "bogus"]
text = st.text(max_size=30)
yamlish = st.one_of(text, st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(str),
                    st.sampled_from(["true", "null", "[]", "{}", "[1, [2]]", "'5'", "-1", "1e400", "&a x", "*a"]))
outcomes: Counter[str] = Counter()
unexpected: list[str] = []


def _cli(argv: list[str], stdin: bytes = b"") -> None:
    """Run llmgen's `main()` on argv; count how it ended."""
    saved = sys.stdin, sys.stdout, sys.stderr, sys.argv
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape") for _ in range(2))
    sys.stdin, sys.stdout, sys.stderr = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"), out, err
    sys.argv = ["llmgen", *argv]
    try:
        cli.main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except ModelLoad:
        code = "accepted"
    except BaseException as exc:  # noqa: BLE001 - what the fuzzer is here to find
        code = f"raised {type(exc).__name__}: {exc}"
    finally:
        sys.stdin, sys.stdout, sys.stderr, sys.argv = saved
    out.flush()
    err.flush()
    stdout, stderr = (stream.buffer.getvalue().decode("utf-8", "replace") for stream in (out, err))
    lines = stderr.splitlines()
    one_line = code in (0, "accepted") or (
        code == 2 and lines and lines[0].startswith("error: ") and len(lines) <= 2 and stdout == "")
    _count("cli", code, one_line, f"{argv!r} -> {code}: {stderr[:300]!r}")


def _count(kind: str, code: object, good: bool, what: str) -> None:
    outcomes[f"{kind}: {code if good else 'UNEXPECTED'}"] += 1
    if not good:
        unexpected.append(what)


def _function(kind: str, fn, what: str) -> None:
    try:
        fn()
        code, good = "accepted", True
    except UsageError:
        code, good = 2, True
    except Exception as exc:  # noqa: BLE001
        code, good = f"raised {type(exc).__name__}", False
        what = f"{what} -> {type(exc).__name__}: {exc}"
    _count(kind, code, good, what)


def fuzz(cases: int, folder: Path) -> None:
    each = dict(max_examples=cases // 4, phases=[Phase.generate], deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
    command = st.sampled_from([["run", "hi"], ["compare", "hi"], ["batch", "-"], ["chat"], ["presets", "show"]])

    @settings(**each)
    @given(command, st.lists(st.tuples(st.sampled_from(FLAGS), st.one_of(text, yamlish)), max_size=4))
    def flags(base: list[str], pairs: list[tuple[str, str]]) -> None:
        _cli([*base, *(part for pair in pairs for part in pair)])

    @settings(**each)
    @given(st.lists(st.tuples(st.sampled_from(KEYS), yamlish), min_size=1, max_size=3))
    def set_pairs(pairs: list[tuple[str, str]]) -> None:
        _cli(["run", "hi", *(part for key, value in pairs for part in ("--set", f"{key}={value}"))])

    @settings(**each)
    @given(st.one_of(
        st.dictionaries(st.sampled_from(["generation", "name", "extends", "system", "quant", "constraint", "x"]),
                        st.one_of(st.dictionaries(st.sampled_from(KEYS), yamlish), yamlish),
                        max_size=4).map(lambda d: __import__("yaml").safe_dump(d)),
        text, st.binary(max_size=64).map(lambda b: b.decode("latin-1"))))
    def preset_files(body: str) -> None:
        path = folder / "fuzz.yaml"
        path.write_bytes(body.encode("utf-8", "surrogateescape"))
        _cli(["run", "hi", "-p", str(path)])

    @settings(**each)
    @given(st.one_of(st.binary(max_size=80), st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
            st.sampled_from(["id", "prompt", "messages", "system", "preset", "params", "raw", "json_schema",
                             "regex", "choice", "grammar", "role", "content", "x"]), inner, max_size=4)),
        max_leaves=10).map(lambda o: __import__("json").dumps(o).encode())))
    def records(line: bytes) -> None:
        _function("record", lambda: parse_line(line, 1, 0), repr(line[:200]))

    for part in (flags, set_pairs, preset_files, records):
        part()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=10_000)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        fuzz(args.cases, Path(folder))
    total = sum(outcomes.values())
    print(f"{total} cases in {time.perf_counter() - start:.0f}s; unexpected endings: {len(unexpected)} (goal 0)")
    for key, count in sorted(outcomes.items()):
        print(f"  {key:32} {count}")
    for what in unexpected[:10]:
        print("UNEXPECTED", what)


if __name__ == "__main__":
    main()
