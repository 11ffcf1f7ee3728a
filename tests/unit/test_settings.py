"""Generation settings: --set parsing, implied sampling, validation."""

from __future__ import annotations

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
