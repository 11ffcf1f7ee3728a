"""Running llmgen's decoding loops the way the engine does, for the decoding tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.generation.streamers import BaseStreamer

from llmgen.decoding import decoding_loop, stop_string_criteria

FIXTURE = Path(__file__).parent / "fixtures" / "reference_455.json"


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


def strip_padding(ids: list[int], pad: int, eos: int) -> list[int]:
    """New tokens up to and including the first eos."""
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def four_bit(model: Any, directory: Path) -> Any:
    """`model` saved and reloaded 4-bit NF4 with double quantisation, float32 compute: llmgen's CPU 4-bit."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model.save_pretrained(directory)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(directory, quantization_config=quant, device_map="cpu").eval()
