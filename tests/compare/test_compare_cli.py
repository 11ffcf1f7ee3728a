"""The commands as users run them: compare, run --n-best/--inspect/--stats, presets show --explain."""

from __future__ import annotations

import json

import pytest


pytestmark = pytest.mark.integration


def test_compare_json_is_the_documented_object(cli):
    proc = cli("compare", "Say hi.", "--presets", "greedy,beam,sampling", "-n", "8", "--seed", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert set(obj) == {"prompt", "model", "results"} and obj["prompt"] == "Say hi."
    assert [r["preset"] for r in obj["results"]] == ["greedy", "beam", "sampling"]
    assert [r["strategy"] for r in obj["results"]] == ["greedy", "beam", "sampling"]
    for r in obj["results"]:
        assert set(r) - {"scores"} == {"preset", "strategy", "text", "token_ids", "finish_reason", "usage", "measures"}
        assert ("scores" in r) == (r["strategy"] == "beam")  # a beam search scores its sequence
        m, ids = r["measures"], r["token_ids"]
        assert r["usage"]["completion_tokens"] == len(ids) and r["finish_reason"] in ("eos", "length")
        assert set(m) == {"new_tokens", "seconds", "tokens_per_s", "distinct_1", "distinct_2",
                          "repetition_4gram", "mean_logprob"}
        assert m["new_tokens"] == len(ids) and 0 < len(ids) <= 8
        # worked out here from the token ids, not with compare's own functions
        pairs, fours = list(zip(ids, ids[1:])), [tuple(ids[i:i + 4]) for i in range(len(ids) - 3)]
        assert m["distinct_1"] == round(len(set(ids)) / len(ids), 4)
        assert m["distinct_2"] == (round(len(set(pairs)) / len(pairs), 4) if pairs else None)
        assert m["repetition_4gram"] == (round(1 - len(set(fours)) / len(fours), 4) if fours else None)
        assert m["mean_logprob"] < 0 and m["seconds"] > 0


def test_compare_table_shows_every_preset_and_refuses_unknown_ones(cli):
    proc = cli("compare", "Say hi.", "--presets", "greedy,prompt-lookup", "-n", "4")
    assert proc.returncode == 0, proc.stderr
    for word in ("greedy", "prompt-lookup", "distinct-1", "repeated 4-grams", "mean logprob"):
        assert word in proc.stdout
    bad = cli("compare", "Say hi.", "--presets", "greedy,nope")
    assert bad.returncode == 2 and "unknown preset 'nope'" in bad.stderr


def test_run_n_best_and_inspect_in_json(cli):
    proc = cli("run", "Name a fruit.", "-p", "beam", "--n-best", "3", "-n", "8", "--json", "--top-alternatives", "2")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert len(obj["texts"]) == len(obj["scores"]) == 3
    assert obj["scores"] == sorted(obj["scores"], reverse=True)
    assert obj["text"] == obj["texts"][0]
    tokens = obj["tokens"]
    assert [t["id"] for t in tokens] == obj["token_ids"][0]
    assert all(set(t) == {"id", "text", "logprob", "alternatives"} and len(t["alternatives"]) == 2 for t in tokens)
    assert all(t["logprob"] <= 0 for t in tokens)
    refused = cli("run", "Name a fruit.", "--n-best", "2")
    assert refused.returncode == 2 and "beam" in refused.stderr


def test_run_inspect_prints_tokens_with_probabilities(cli):
    proc = cli("run", "Name a fruit.", "-n", "6", "--inspect")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split()[:1] == ["#"] and "prob" in line for line in lines)
    rows = [line.split() for line in lines if line.split()[:1] and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 7))


def test_prompt_lookup_stats_report_acceptance_and_speedup(cli):
    proc = cli("run", "Repeat exactly: the quick brown fox jumps over the lazy dog.", "-p", "prompt-lookup",
               "-n", "12", "--stats", "--json")
    assert proc.returncode == 0, proc.stderr
    drafts = json.loads(proc.stdout)["drafts"]
    assert drafts["same_tokens"] is True and drafts["baseline"] == "greedy"
    assert 0 < drafts["accepted"] <= drafts["drafted"] and drafts["speedup"] > 0
    assert "drafted tokens accepted" in proc.stderr and "the speed of greedy" in proc.stderr


def test_presets_show_explain(cli):
    proc = cli("presets", "show", "chat", "--explain")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sample: transformers GenerationMixin._sample" in out
    order = ["RepetitionPenaltyLogitsProcessor", "TemperatureLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper"]
    assert [out.index(name) for name in order] == sorted(out.index(name) for name in order)
    assert "MaxLengthCriteria(max_length=512)" in out and "EosTokenCriteria" in out
