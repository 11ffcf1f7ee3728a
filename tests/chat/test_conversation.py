"""The conversation logic without a terminal: history, trimming, undo/retry, settings, transcripts, the KV cache."""

from __future__ import annotations

import dataclasses
import json

import pytest

from llmgen import presets
from llmgen.chat import Conversation, Flags, read_transcript
from llmgen.engine import Request
from llmgen.errors import UsageError

LONG = "Tell me everything about the history of the city, its rivers, bridges, markets and people. " * 3


def conversation(engine, preset: str = "greedy", **overrides) -> Conversation:
    return Conversation(engine, presets.resolve(preset), overrides={"max_new_tokens": 6, **overrides},
                        system="Be brief.")


@pytest.fixture
def small_context(tiny_engine, monkeypatch):
    """The tiny model with a 160-token context, so a few turns fill it."""
    monkeypatch.setattr(tiny_engine, "info", dataclasses.replace(tiny_engine.info, context_length=160))
    return tiny_engine


def roles(conv: Conversation) -> list[str]:
    return [m["role"] for m in conv.messages]


def test_replies_join_the_history_and_the_template_covers_all_of_it(tiny_engine) -> None:
    conv = conversation(tiny_engine)
    first = conv.reply("Hello")
    second = conv.reply("And then?")
    assert roles(conv) == ["user", "assistant", "user", "assistant"]
    assert conv.messages[1]["content"] == first.result.text
    assert conv.messages[3]["content"] == second.result.text
    expected = tiny_engine.encode(Request(messages=[
        {"role": "user", "content": "Hello"}, {"role": "assistant", "content": first.result.text},
        {"role": "user", "content": "And then?"}], system="Be brief."))
    assert second.result.prompt_tokens == len(expected)


def test_the_reused_cache_gives_the_same_tokens_as_encoding_everything(tiny_engine) -> None:
    conv = conversation(tiny_engine, max_new_tokens=12)
    conv.reply("Hello there")
    turn = conv.reply("Tell me more")
    assert turn.result.extra["cached_tokens"] > turn.result.prompt_tokens // 2
    fresh = tiny_engine.generate(Request(messages=conv.messages[:3], system="Be brief."), conv.plan())
    assert turn.result.token_ids == fresh.token_ids
    assert conv.totals.reused_tokens == turn.result.extra["cached_tokens"]


def test_retry_replaces_the_last_reply_and_undo_drops_the_exchange(tiny_engine) -> None:
    conv = conversation(tiny_engine, "sampling", max_new_tokens=6)
    conv.reply("One")
    conv.reply("Two")
    before = [dict(m) for m in conv.messages]
    conv.retry()
    assert roles(conv) == ["user", "assistant"] * 2
    assert conv.messages[:3] == before[:3]
    assert conv.undo() == 2
    assert conv.messages == before[:2]
    assert conv.undo() == 2 and conv.messages == []
    with pytest.raises(UsageError, match="nothing to undo"):
        conv.undo()
    with pytest.raises(UsageError, match="nothing to retry"):
        conv.retry()


def test_reset_keeps_system_preset_and_settings(tiny_engine) -> None:
    conv = conversation(tiny_engine)
    conv.reply("Hi")
    conv.reset()
    assert conv.messages == [] and conv.system == "Be brief." and conv.overrides == {"max_new_tokens": 6}


def test_oldest_turns_leave_the_window_when_the_context_fills_and_the_system_prompt_stays(small_context) -> None:
    conv = conversation(small_context, max_new_tokens=20)
    trimmed: list[int] = []
    for i in range(4):
        conv.reply(f"{i}: {LONG}", on_trim=trimmed.append)
        assert conv.totals.last.prompt_tokens + 20 <= 160
    assert trimmed and conv.first > 0 and conv.first % 2 == 0
    assert len(conv.messages) == 8  # the transcript keeps everything; only the model's window moves
    prompt = small_context.tokenizer.decode(small_context.encode(Request(messages=conv.window, system=conv.system)))
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "0: Tell me" not in prompt and "3: Tell me" in prompt


def test_a_message_too_long_for_the_context_is_refused_and_leaves_no_trace(small_context) -> None:
    conv = conversation(small_context, max_new_tokens=20)
    conv.reply("Hi")
    before = list(conv.messages)
    with pytest.raises(UsageError, match="do not fit the model's context"):
        conv.reply(LONG * 3)
    assert conv.messages == before


def test_an_interrupted_reply_is_kept_and_marked(tiny_engine) -> None:
    conv = conversation(tiny_engine, max_new_tokens=40, min_new_tokens=40)
    pieces: list[str] = []

    def stop_after_three(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 3:
            raise KeyboardInterrupt

    turn = conv.reply("Talk", on_text=stop_after_three)
    assert turn.interrupted and turn.result.finish_reason == "interrupted"
    assert conv.messages[-1] == {"role": "assistant", "content": turn.result.text, "interrupted": True}
    assert turn.result.text.startswith("".join(pieces))
    after = conv.reply("Go on")  # the cache was dropped with the cut-short generation: a clean re-encode
    assert after.result.extra["cached_tokens"] == 0 and roles(conv) == ["user", "assistant"] * 2


def test_an_interrupt_before_any_text_keeps_the_history_as_it_was(tiny_engine, monkeypatch) -> None:
    conv = conversation(tiny_engine, "beam", max_new_tokens=4)
    conv.reply("Hi")
    before = list(conv.messages)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny_engine, "generate", interrupted)
    turn = conv.reply("Again")
    assert turn.interrupted and turn.result is None and conv.messages == before
    conv.retry()
    assert conv.messages == before  # a retry that yields nothing keeps the old reply


def test_settings_change_the_next_reply_and_bad_ones_change_nothing(tiny_engine) -> None:
    conv = conversation(tiny_engine)
    plan = conv.update_settings(["max_new_tokens=3", "temperature=0.5"])
    assert plan.config.max_new_tokens == 3 and plan.config.do_sample  # a temperature means sampling
    assert len(conv.reply("Hi").result.token_ids) <= 3
    for bad in (["temperature=-1"], ["tempreature=0.5"], ["num_beams=abc"], ["nonsense"]):
        with pytest.raises(UsageError):
            conv.update_settings(bad)
    assert conv.overrides == {"max_new_tokens": 3, "temperature": 0.5, "do_sample": True}
    conv.update_settings(["temperature="])
    assert "temperature" not in conv.overrides


def test_preset_switch_and_a_bad_preset_keeps_the_current_one(tiny_engine) -> None:
    conv = conversation(tiny_engine)
    assert conv.use_preset("beam").strategy == "beam"
    with pytest.raises(UsageError, match="unknown preset"):
        conv.use_preset("no-such-preset")
    assert conv.preset.name == "beam"
    assert conv.reply("Hi").result.finish_reason in ("eos", "length")


def test_save_then_load_restores_messages_preset_settings_and_system(tiny_engine, tmp_path) -> None:
    conv = conversation(tiny_engine, "precise", top_k=7)
    conv.reply("Hi")
    conv.reply("More")
    path = tmp_path / "chat.json"
    conv.save(path)
    data = json.loads(path.read_text())
    assert data["model"] == "tiny-llama" and data["preset"] == "precise" and data["settings"]["top_k"] == 7
    assert data["messages"] == conv.messages and data["system"] == "Be brief."

    other = Conversation(tiny_engine, presets.resolve("greedy"))
    assert other.restore(read_transcript(path)) == []
    assert (other.messages, other.preset.name, other.overrides, other.system) == (
        conv.messages, "precise", conv.overrides, "Be brief.")
    other.reply("And again")
    assert len(other.messages) == 6


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "expected a JSON object"),
        ('{"messages": [{"role": "user"}]}', "messages.0.content"),
        ('{"messages": [{"role": "user", "content": "a"}]}', "must alternate"),
        ('{"messages": [{"role": "robot", "content": "a"}]}', "messages.0.role"),
        ('{"format": "other/2", "messages": []}', "unknown transcript format"),
        ("[" * 100_000, "nests too deeply"),
        ('{"messages": [], "settings": {"top_k": 1' + "0" * 5000 + "}}", "invalid JSON: Exceeds the limit"),
        ('{"system": "\\udc80", "messages": []}', "system: not valid Unicode"),
        ('{"messages": [{"role": "user", "content": "a", "interrupted": "yes"}]}', "messages.0.interrupted"),
        ('{"settings": {"top_k": -1}, "messages": []}', "settings: top_k"),
    ],
)
def test_malformed_transcripts_are_one_line_errors_naming_the_file(tmp_path, content: str, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=problem) as info:
        read_transcript(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_transcript_with_bad_settings_is_refused_before_anything_changes(tiny_engine, tmp_path) -> None:
    conv = conversation(tiny_engine)
    conv.reply("Hi")
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"settings": {"temperature": -2}, "messages": []}))
    with pytest.raises(UsageError, match="temperature"):
        conv.restore(read_transcript(path))
    assert len(conv.messages) == 2


def test_a_transcript_naming_a_bad_preset_is_refused_as_preset_refuses_it(tiny_engine, tmp_path) -> None:
    typo = presets.user_dir() / "typo.yaml"
    typo.parent.mkdir(parents=True)
    typo.write_text("extends: greedy\ngeneration:\n  temprature: 0.5\n")
    conv = conversation(tiny_engine)
    conv.reply("Hi")
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"preset": "typo", "messages": []}))
    message = f"^{typo}: unknown generation setting 'temprature'"
    with pytest.raises(UsageError, match=message):
        conv.use_preset("typo")
    with pytest.raises(UsageError, match=message):
        conv.restore(read_transcript(path))
    assert conv.preset.name == "greedy" and len(conv.messages) == 2
    conv.restore(read_transcript(path), Flags(preset=presets.load("beam")))  # a preset given with it is not read
    assert conv.preset.name == "beam" and conv.messages == []


def test_flags_given_with_a_transcript_override_it_as_they_override_a_preset(tiny_engine, tmp_path) -> None:
    conv = conversation(tiny_engine, "precise", top_k=7)
    conv.reply("Hi")
    path = tmp_path / "chat.json"
    conv.save(path)

    flagged = Conversation(tiny_engine, presets.load("greedy"))
    flagged.restore(read_transcript(path), Flags({"max_new_tokens": 3}, presets.load("beam"), "Be terse."))
    assert (flagged.preset.name, flagged.overrides, flagged.system) == (
        "beam", {"max_new_tokens": 3, "top_k": 7}, "Be terse.")
    assert flagged.messages == conv.messages and flagged.plan().config.max_new_tokens == 3

    settings_only = Conversation(tiny_engine, presets.load("greedy"))
    settings_only.restore(read_transcript(path), Flags({"max_new_tokens": 3}))
    assert (settings_only.preset.name, settings_only.system) == ("precise", "Be brief.")
