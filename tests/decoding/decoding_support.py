"""Running llmgen's decoding loops the way the engine does, for the decoding tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.generation.streamers import BaseStreamer

from llmgen import strategies
from llmgen.decoding import decoding_loop, stop_string_criteria
from llmgen.strategies import Strategy

FIXTURE = Path(__file__).parent / "fixtures" / "reference_455.json"
TINY_A, TINY_B = [1, 5, 17, 33, 8], [1, 40, 41, 12, 7, 66, 3, 90]


@dataclass(frozen=True)
class Loop:
    """One of llmgen's own loops, as the contract suite runs it."""

    row: Strategy
    reference: str  # the strategy's key in the 4.55 reference fixture
    settings: dict  # for the tiny model
    builtin_settings: dict  # for the built-in model
    builtin_stop: str | None  # a stop string every beam meets; None: one cut from the middle of the text
    eos_from: tuple[int, int]  # (prompt, position) in a run alone of the token made eos in the mid-batch test
    refused: dict  # settings the loop cannot run with
    refusal: str  # what it says then (a regular expression)

    def __str__(self) -> str:
        return self.row.name


CONTRASTIVE = Loop(
    strategies.CONTRASTIVE,
    "contrastive",
    settings={"penalty_alpha": 0.6, "top_k": 4, "max_new_tokens": 20},
    builtin_settings={"penalty_alpha": 0.6, "top_k": 4, "max_new_tokens": 16},
    builtin_stop=None,
    eos_from=(0, 3),
    refused={"penalty_alpha": 0.6, "top_k": 4, "use_cache": False},
    refusal="contrastive search needs use_cache=true",
)
DOLA = Loop(
    strategies.DOLA,
    "dola",
    settings={"dola_layers": [1, 3], "repetition_penalty": 1.2, "max_new_tokens": 16},
    builtin_settings={"dola_layers": "high", "repetition_penalty": 1.2, "max_new_tokens": 14},
    builtin_stop=None,
    eos_from=(1, 2),
    refused={"dola_layers": "middle"},
    refusal="dola_layers must be 'low', 'high' or a list of layer indices",
)
GROUP_BEAM = Loop(
    strategies.DIVERSE_BEAM,
    "group_beam",
    settings={"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0, "num_return_sequences": 2,
              "max_new_tokens": 12},
    builtin_settings={"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0, "max_new_tokens": 16},
    builtin_stop=" ",  # a beam search stops once every beam has met a stop string, as in 4.55
    eos_from=(1, 3),
    refused={"num_beams": 5, "num_beam_groups": 2, "diversity_penalty": 1.0},
    refusal=r"num_beams \(5\) must be a multiple of num_beam_groups \(2\)",
)
LOOPS = [CONTRASTIVE, DOLA, GROUP_BEAM]


def reference() -> dict:
    return json.loads(FIXTURE.read_text())


def reference_cases(strategy: str) -> list[dict]:
    return [case for case in reference()["cases"] if case["strategy"] == strategy]


def case_id(case: dict) -> str:
    prompt = case["prompt"]
    kind = "ids" if prompt is None else ("raw" if "text" in prompt else "chat")
    settings = ",".join(f"{k}={v}" for k, v in case["settings"].items() if k not in ("do_sample", "max_new_tokens"))
    return f"{case['model']}-{kind}-{settings}".replace(" ", "")


class CountingStreamer(BaseStreamer):
    """Records every `put` (the first is the prompt, from generate itself) and `end`."""

    def __init__(self) -> None:
        self.puts: list[list[int]] = []
        self.ends = 0

    def put(self, value: torch.Tensor) -> None:
        self.puts.append(value.view(-1).tolist())

    def end(self) -> None:
        self.ends += 1


def generate(
    model: Any,
    prompts: list[list[int]],
    settings: dict,
    streamer: BaseStreamer | None = None,
    **kwargs: Any,
) -> tuple[Any, int]:
    """Left-padded batch through `generate(custom_generate=decoding_loop(...))`; the output and the padded width."""
    base = model.generation_config
    special = {"bos_token_id": base.bos_token_id, "eos_token_id": base.eos_token_id, "pad_token_id": base.pad_token_id}
    config = GenerationConfig(**{**special, "return_dict_in_generate": True, "output_scores": True, **settings})
    pad = config.pad_token_id
    width = max(map(len, prompts))
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    loop = decoding_loop(config, streamer)
    assert loop is not None
    if "tokenizer" in kwargs:  # as the engine does: stop strings travel as criteria to a custom loop
        config, kwargs["stopping_criteria"] = stop_string_criteria(config, kwargs.pop("tokenizer"))
    output = model.generate(
        input_ids=input_ids, attention_mask=mask, generation_config=config, streamer=streamer,
        custom_generate=loop, **kwargs,
    )
    return output, width


def new_tokens(model: Any, prompts: list[list[int]], settings: dict, **kwargs: Any) -> list[list[int]]:
    output, width = generate(model, prompts, settings, **kwargs)
    return output.sequences[:, width:].tolist()


def unpadded(ids: list[int], pad: int) -> list[int]:
    """A row without the padding that fills it up to the longest row of its batch."""
    while ids and ids[-1] == pad:
        ids = ids[:-1]
    return ids


def four_bit(model: Any, directory: Path) -> Any:
    """`model` saved and reloaded 4-bit NF4 with double quantisation, float32 compute: llmgen's CPU 4-bit."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model.save_pretrained(directory)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(directory, quantization_config=quant, device_map="cpu").eval()
