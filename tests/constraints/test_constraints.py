"""Structured output on a tiny random model: whatever the model's weights, every strategy's output satisfies the
constraint (checked with `jsonschema` and `re`, independently of the grammar engine), and bad input is one line,
exit 2, before any model loads."""

from __future__ import annotations

import json
import re
import sys

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmgen import constraints, presets
from llmgen.engine import Request
from llmgen.errors import UsageError
from tests.batch.batch_helpers import jsonl, records, run_bytes

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "born": {"type": "integer", "minimum": 0, "maximum": 2100},
        "alive": {"type": "boolean"},
    },
    "required": ["name", "born", "alive"],
    "additionalProperties": False,
}
STRATEGIES = {
    "greedy": {},
    "sampling": {},
    "beam": {"num_return_sequences": 2},
    "beam-sampling": {},
    "contrastive": {},
    "dola": {},
    "diverse-beam": {},
    "prompt-lookup": {},
}


def generate(engine, constraint, preset="greedy", prompt="Extract the person: Ada Lovelace, born 1815", **extra):
    plan = engine.plan(presets.load(preset), {"max_new_tokens": 48, **extra, **constraint.written}, seed=0)
    assert plan.constraint == constraint
    return engine.generate(Request(prompt=prompt), plan)


def outputs(result) -> list[str]:
    return result.texts or [result.text]


@pytest.mark.parametrize("preset", list(STRATEGIES))
def test_every_strategy_writes_valid_json(tiny_engine, preset):
    constraint = constraints.parse("json_schema", json.dumps(PERSON))
    result = generate(tiny_engine, constraint, preset, **STRATEGIES[preset])
    texts = outputs(result)
    if preset == "beam":
        assert len(texts) == 2  # every returned beam is checked
    elif preset == "diverse-beam":
        assert len(texts) > 1
    for text in texts:
        jsonschema.validate(json.loads(text), PERSON)
    assert result.finish_reason == "eos"
    assert result.extra["constraint"]["satisfied"] is True


def test_regex_and_choice_match(tiny_engine):
    regex = constraints.parse("regex", r"[a-c]{2,4}-[0-9]{1,3}")
    for preset in ("greedy", "sampling", "beam"):
        for text in outputs(generate(tiny_engine, regex, preset)):
            assert re.fullmatch(r"[a-c]{2,4}-[0-9]{1,3}", text), text
    choice = constraints.parse("choice", "red,green,blue")
    for preset in ("greedy", "contrastive", "diverse-beam"):
        for text in outputs(generate(tiny_engine, choice, preset)):
            assert text in ("red", "green", "blue")


def test_grammar_gbnf(tiny_engine):
    grammar = constraints.parse("grammar", 'root ::= ("yes" | "no") "!" [0-9]\n')
    assert re.fullmatch(r"(yes|no)![0-9]", generate(tiny_engine, grammar, "sampling").text)


def test_length_limit_is_not_a_silent_truncation(tiny_engine, capsys):
    from llmgen import cli

    constraint = constraints.parse("json_object", True)
    result = generate(tiny_engine, constraint, max_new_tokens=3)
    assert result.finish_reason == "length"
    assert result.extra["constraint"] == {**result.extra["constraint"], "kind": "json_object", "satisfied": False}
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.text)
    cli._warn_unsatisfied(result, "-n")  # what `llmgen run` does after printing
    out, err = capsys.readouterr()
    assert out == "" and "does not complete the json_object constraint (finish: length); raise -n" in err


def test_streaming_still_streams_token_by_token(tiny_engine):
    constraint = constraints.parse("choice", "alpha beta gamma,delta")
    plan = tiny_engine.plan(presets.load("greedy"), {"max_new_tokens": 16, **constraint.written})
    pieces: list[str] = []
    result = tiny_engine.generate(Request(prompt="pick"), plan, on_text=pieces.append)
    assert "".join(pieces) == result.text in ("alpha beta gamma", "delta")
    assert len(pieces) > 1 or result.text == "delta"


def test_batch_mixes_constrained_free_and_bad_records(tiny_engine):
    data = jsonl(
        {"id": "s", "prompt": "person", "json_schema": PERSON},
        {"id": "f", "prompt": "anything"},
        {"id": "r", "prompt": "code", "regex": "[0-9]{3}"},
        {"id": "c", "prompt": "pick", "choice": ["yes", "no"]},
        {"id": "bad", "prompt": "x", "json_schema": {"type": "nope"}},
        {"id": "two", "prompt": "x", "regex": "a", "choice": ["a"]},
    )
    out, summary = run_bytes(tiny_engine, data, max_new_tokens=40)
    got = {r["id"]: r for r in records(out)}
    jsonschema.validate(json.loads(got["s"]["text"]), PERSON)
    assert got["s"]["constraint"] == {"kind": "json_schema", "satisfied": True}
    assert "constraint" not in got["f"] and got["f"]["finish_reason"] == "length"
    assert re.fullmatch("[0-9]{3}", got["r"]["text"])
    assert got["c"]["text"] in ("yes", "no")
    assert "not a valid JSON Schema" in got["bad"]["error"]
    assert "give one constraint" in got["two"]["error"]
    assert summary.errors == 2


@st.composite
def small_schemas(draw):
    """Small object schemas with bounded leaves, so a random model completes them within the token budget."""
    leaf = st.one_of(
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
        st.builds(lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
                  st.integers(-50, 50), st.integers(0, 100)),
        st.builds(lambda n: {"type": "string", "maxLength": n}, st.integers(0, 4)),
        st.lists(st.text("abc", min_size=1, max_size=3), min_size=1, max_size=3, unique=True).map(
            lambda xs: {"enum": xs}),
    )
    names = draw(st.lists(st.text("xyz", min_size=1, max_size=2), min_size=1, max_size=3, unique=True))
    props = {name: draw(leaf) for name in names}
    required = [n for n in names if draw(st.booleans())]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=small_schemas(), preset=st.sampled_from(["greedy", "sampling", "beam"]))
def test_random_schemas_always_validate(tiny_engine, schema, preset):
    constraint = constraints.parse("json_schema", schema)
    result = generate(tiny_engine, constraint, preset, prompt="json", max_new_tokens=64)
    for text in outputs(result):
        jsonschema.validate(json.loads(text), schema)


BAD = [
    (["--json-schema", "{bad"], "--json-schema: not JSON"),
    (["--json-schema", '{"type": "foo"}'], "not a valid JSON Schema"),
    (["--json-schema", '{"type": "object", "not": {"type": "string"}}'], "Unimplemented keys"),
    (["--json-schema", "missing.json"], "no such file"),
    (["--regex", "a(b"], "--regex:"),
    (["--grammar", 'root ::= "a'], "--grammar:"),
    (["--choice", ""], "--choice: give one or more"),
    (["--choice", "a", "--regex", "b"], "give one constraint flag"),
    (["--json-object", "--stop", "}"], "stop strings cannot go together"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[b[1] for b in BAD])
def test_bad_constraints_are_one_line_exit_2_before_loading(monkeypatch, capsys, args, message):
    from llmgen import cli, models

    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(models, "load", no_load)
    monkeypatch.setattr(sys, "argv", ["llmgen", "run", "hi", *args])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    out, err = capsys.readouterr()
    assert exit.value.code == 2
    assert out == ""
    assert message in err and err.startswith("error:")
    assert len([line for line in err.splitlines() if line.strip()]) <= 2  # the error, maybe a hint


def test_preset_constraint(tmp_path):
    path = tmp_path / "yesno.yaml"
    path.write_text("generation:\n  max_new_tokens: 4\nconstraint:\n  choice: ['yes', 'no']\n")
    assert presets.load(str(path)).constraint == constraints.parse("choice", ["yes", "no"])
    path.write_text("constraint:\n  regex: 'a('\n")
    with pytest.raises(UsageError, match="yesno.yaml: constraint regex"):
        presets.load(str(path))
    path.write_text("constraint:\n  schema: {}\n")
    with pytest.raises(UsageError, match="unknown key 'schema'"):
        presets.load(str(path))


def test_builtin_model_extracts_the_person(builtin_engine):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
              "required": ["name", "born"], "additionalProperties": False}
    constraint = constraints.parse("json_schema", schema)
    for preset in ("greedy", "beam"):
        result = generate(builtin_engine, constraint, preset)
        for text in outputs(result):
            person = json.loads(text)
            jsonschema.validate(person, schema)
            assert "Ada" in person["name"]


def test_cli_run_json_schema_end_to_end(cli, tmp_path):
    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(PERSON | {"properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
                                           "required": ["name", "born"]}))
    proc = cli("run", "Extract the person: Ada Lovelace, born 1815", "--json-schema", str(schema), "--json",
               "--stats", "-n", "40")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["constraint"] == {"kind": "json_schema", "satisfied": True}
    assert json.loads(obj["text"])["born"] == 1815
    assert "json_schema satisfied" in proc.stderr and "ms/token" in proc.stderr


def test_chat_schema_regex_and_transcript(tiny_engine, tmp_path):
    from llmgen.chat import Conversation, read_transcript

    conv = Conversation(tiny_engine, presets.resolve("greedy"), overrides={"max_new_tokens": 48})
    conv.update_settings([f"json_schema={json.dumps(PERSON)}"])
    jsonschema.validate(json.loads(conv.reply("Who?").result.text), PERSON)
    conv.update_settings(["regex=[0-9]{2}", "max_new_tokens=8"])  # replaces the schema: one constraint at a time
    assert conv.plan().constraint.kind == "regex"
    assert re.fullmatch("[0-9]{2}", conv.reply("Age?").result.text)
    with pytest.raises(UsageError, match="--regex|regex"):
        conv.update_settings(["regex=a("])
    assert conv.plan().constraint.kind == "regex"  # a bad one changes nothing
    path = tmp_path / "chat.json"
    conv.save(path)
    other = Conversation(tiny_engine, presets.resolve("greedy"))
    other.restore(read_transcript(path))
    assert other.plan().constraint == conv.plan().constraint
    conv.update_settings(["regex="])
    assert conv.plan().constraint is None


def test_assisted_decoding_is_constrained(tiny_engine, tmp_path):
    import dataclasses

    tiny_engine.model.save_pretrained(tmp_path / "draft")
    tiny_engine.tokenizer.save_pretrained(tmp_path / "draft")
    preset = dataclasses.replace(presets.load("greedy"), assistant_model=str(tmp_path / "draft"))
    constraint = constraints.parse("json_schema", PERSON)
    plan = tiny_engine.plan(preset, {"max_new_tokens": 48, **constraint.written})
    assert plan.strategy == "assisted"
    result = tiny_engine.generate(Request(prompt="person"), plan)
    jsonschema.validate(json.loads(result.text), PERSON)
    assert result.extra["constraint"]["satisfied"] is True


def test_compare_applies_the_constraint_to_every_preset(tiny_engine):
    from llmgen import compare
    from tests.batch.batch_helpers import session_for

    session, _ = session_for(tiny_engine, choice="on,off", max_new_tokens=6)
    comparison = compare.run(session, Request(prompt="switch?"), compare.choose("greedy,contrastive,beam", None), 0)
    results = compare.as_json("switch?", "tiny", comparison)["results"]
    assert len(results) == 3
    for r in results:
        assert r["text"] in ("on", "off") and r["constraint"] == {"kind": "choice", "satisfied": True}


def test_chat_schema_command(tiny_engine, tmp_path, capsys):
    from llmgen.chat import Conversation
    from llmgen.repl import Chat

    chat = Chat(Conversation(tiny_engine, presets.resolve("greedy"), overrides={"max_new_tokens": 48}),
                interactive=False)
    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(PERSON))
    assert chat.handle(f"/schema {schema}")
    assert chat.handle("Who?")
    out, err = capsys.readouterr()
    jsonschema.validate(json.loads(out), PERSON)
    assert "constraint for the next replies: json_schema" in err
    assert chat.handle("/schema {not json")
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("error:") == 1
    assert chat.conversation.plan().constraint.kind == "json_schema"  # a bad schema changes nothing
    assert chat.handle("/schema -")
    assert chat.conversation.plan().constraint is None
