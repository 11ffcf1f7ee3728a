"""Ctrl-C during `llmgen compare`, sent to the real command: exit 130, the cut preset marked, no more run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import LLMGEN

pytestmark = pytest.mark.integration

STORY = "Write a long story about a dragon."


def interrupt_compare(presets: str, *flags: str) -> subprocess.CompletedProcess:
    """Run compare on a long generation and send SIGINT once the first preset has been generating a while."""
    first = presets.split(",")[0]
    proc = subprocess.Popen([str(LLMGEN), "compare", STORY, "--presets", presets, "-n", "400", "--seed", "1", "-v",
                             *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    seen = b""
    for line in proc.stderr:  # -v notes each preset as it starts
        seen += line
        if line.startswith(f"compare: {first} (".encode()):
            break
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), (seen + err).decode())


def test_ctrl_c_in_compare_json_marks_the_cut_preset_runs_no_more_and_exits_130() -> None:
    proc = interrupt_compare("greedy,sampling", "--json")
    assert proc.returncode == 130, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["interrupted"] is True and obj["not_run"] == ["sampling"]
    [cut] = obj["results"]
    assert cut["preset"] == "greedy" and cut["interrupted"] is True
    assert cut["measures"]["new_tokens"] == len(cut["token_ids"]) < 400
    assert cut["measures"]["mean_logprob"] is None  # no scoring pass after Ctrl-C
    assert "compare: interrupted during greedy; not run: sampling" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ctrl_c_in_compare_table_during_beam_search_marks_it_and_lists_what_did_not_run() -> None:
    proc = interrupt_compare("beam,greedy")
    assert proc.returncode == 130, proc.stderr
    assert "beam" in proc.stdout and "interrupted" in proc.stdout
    assert "not run: greedy" in proc.stdout
    assert proc.stdout.count("greedy") == 1  # only in the caption: no row for it
    assert "Traceback" not in proc.stderr
