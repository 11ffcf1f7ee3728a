"""Generation settings: --set parsing, implied sampling, validation."""

from __future__ import annotations

import time

import pytest

from llmgen.errors import UsageError
from llmgen.settings import build_config, check, imply_sampling, parse_set


def test_parse_set_reads_yaml_scalars_and_lists() -> None:
    assert parse_set(["temperature=0.7", "do_sample=true", "dola_layers=[8, 16]", "stop_strings=END"]) == {
        "temperature": 0.7,
        "do_sample": True,
        "dola_layers": [8, 16],
        "stop_strings": "END",
    }


@pytest.mark.parametrize("pair", ["temperature", "=3", "top_k=[1"])
def test_parse_set_refuses_malformed_pairs(pair: str) -> None:
    with pytest.raises(UsageError, match="--set"):
        parse_set([pair])


def test_sampling_flags_turn_sampling_on_and_zero_temperature_means_greedy() -> None:
    assert imply_sampling({"temperature": 0.8}) == {"temperature": 0.8, "do_sample": True}
    assert imply_sampling({"temperature": 0}) == {"do_sample": False}
    assert imply_sampling({"top_p": 0.9, "do_sample": False}) == {"top_p": 0.9, "do_sample": False}
    assert imply_sampling({"max_new_tokens": 5}) == {"max_new_tokens": 5}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 2.0}, "top_p"),
        ({"num_beams": 0}, "num_beams"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temprature": 0.5}, "did you mean 'temperature'"),
    ],
)
def test_bad_values_and_keys_are_refused_with_the_source_named(settings: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as err:
        check(settings, "my.yaml")
    assert str(err.value).startswith("my.yaml: ")


def test_settings_that_contradict_each_other_are_refused_by_transformers_validation() -> None:
    with pytest.raises(UsageError, match="my.yaml: .*num_return_sequences"):
        build_config({}, {"num_beams": 2}, {"num_return_sequences": 3}, source="my.yaml")


def test_ignored_settings_are_warnings_not_errors() -> None:
    config, warnings = build_config({}, {"do_sample": False, "temperature": 0.5})
    assert config.temperature == 0.5
    assert any("temperature" in w for w in warnings)


def test_later_layers_override_earlier_ones() -> None:
    config, _ = build_config({"max_new_tokens": 512}, {"max_new_tokens": 64, "top_k": 5}, {"top_k": None})
    assert config.max_new_tokens == 64
    assert config.top_k == 5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_new_tokens": "5"}, 'params: max_new_tokens must be an integer, got the string "5"'),
        ({"max_new_tokens": True}, "params: max_new_tokens must be an integer, got true"),
        ({"top_k": 5.0}, "params: top_k must be an integer, got 5.0"),
        ({"temperature": "0.5"}, 'params: temperature must be a number, got the string "0.5"'),
        ({"do_sample": "true"}, 'params: do_sample must be true or false, got the string "true"'),
        ({"stop_strings": 5}, "params: stop_strings must be a string or a list of strings, got 5"),
        ({"top_p": float("nan")}, "params: top_p: Input should be a finite number"),
    ],
)
def test_check_is_type_strict_and_names_the_source(settings: dict, message: str) -> None:
    with pytest.raises(UsageError) as err:
        check(settings, "params")
    assert str(err.value).startswith(message)


def test_check_accepts_integers_for_float_settings() -> None:
    check({"temperature": 1, "top_p": 1, "repetition_penalty": 2}, "params")


@pytest.mark.parametrize("stops", ["", [""], ["END", ""], []])
def test_check_refuses_empty_stop_strings(stops) -> None:
    with pytest.raises(UsageError, match="params: stop_strings: an empty"):
        check({"stop_strings": stops}, "params")


def test_check_bounds_every_value_but_accepts_real_word_lists() -> None:
    check({"bad_words_ids": [[i, i + 1, i + 2] for i in range(5_000)]}, "params")
    with pytest.raises(UsageError, match=r"params: bad_words_ids: more than 100,000 values"):
        check({"bad_words_ids": [[i] for i in range(60_000)]}, "params")
    with pytest.raises(UsageError, match=r"params: sequence_bias: more than 100,000 values"):
        check({"sequence_bias": {str(i): [0.5] * 10 for i in range(10_000)}}, "params")


def test_check_refuses_a_shared_billion_value_list_at_once() -> None:
    value: list = [1, 2]
    for _ in range(9):
        value = [value] * 10  # what YAML aliases would build: 2 * 10**9 values in a few objects
    started = time.monotonic()
    with pytest.raises(UsageError, match="more than 100,000 values"):
        check({"bad_words_ids": value}, "params")
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ('max_new_tokens="5"', '--set: max_new_tokens must be an integer, got the string "5"'),
        ("temperature=[0.5]", "--set: temperature must be a number, got a list"),
        ("bad_words_ids=[&a [1], *a, *a]", "--set bad_words_ids: line 1, column 2: invalid YAML: anchors and aliases"),
    ],
)
def test_parse_set_refuses_mistyped_values_and_yaml_aliases(pair: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_set([pair])
    assert str(err.value).startswith(message)


def test_parse_set_names_the_source_it_is_given() -> None:
    with pytest.raises(UsageError, match='^/set: top_k must be an integer, got the string "3"$'):
        parse_set(['top_k="3"'], source="/set")
