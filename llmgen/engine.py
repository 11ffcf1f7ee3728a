"""The generation engine: one loaded model, prompts in, results out. run, chat, batch and compare share it.

The engine turns requests (a prompt or chat messages) into token ids with the model's chat template,
has `llmgen.plans` layer settings over the model's own into a validated `GenerationConfig`, and calls
`model.generate` with transformers' own logits processors, stopping criteria (stop strings included)
and a streamer. Strategies that transformers 5 no longer carries (contrastive, DoLa, diverse beam)
come from `llmgen.decoding` as `custom_generate` loops; what each strategy allows (batching,
streaming, a reused cache) is its row in `llmgen.strategies`. Nothing here prints: text reaches the
caller through `on_text`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmgen import caches, models, plans
from llmgen.config import DEFAULT_MAX_NEW_TOKENS
from llmgen.errors import UsageError
from llmgen.drafts import count_drafts
from llmgen.plans import Plan
from llmgen.strategies import Strategy
from llmgen.streaming import TextCallbackStreamer, find_stop
from llmgen.tokens import TokenInfo, token_details

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig
    from transformers.generation.utils import GenerateOutput

    from llmgen.presets import ResolvedPreset

_OWN_KEYS = {"transformers_version", "_from_model_config"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One generation input: a prompt or a list of chat messages, optionally a system prompt."""

    prompt: str | None = None
    messages: Sequence[dict[str, str]] | None = None
    system: str | None = None
    raw: bool = False


@dataclass
class Result:
    """One generated answer (or several, with num_return_sequences > 1)."""

    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    total_s: float
    ttft_s: float | None = None
    texts: list[str] | None = None
    all_token_ids: list[list[int]] | None = None
    finish_reasons: list[str] | None = None
    scores: list[float] | None = None
    tokens: list[TokenInfo] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return sum(map(len, self.all_token_ids)) if self.all_token_ids else len(self.token_ids)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.total_s if self.total_s > 0 else 0.0

    @property
    def usage(self) -> dict[str, int]:
        """Tokens in and out, as every JSON output carries them."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    def as_dict(self) -> dict[str, Any]:
        """The answer as JSON outputs carry it: its text and new token ids (lists of them, with the beam scores,
        for several sequences), why it ended, and its usage."""
        obj: dict[str, Any] = {"text": self.text, "token_ids": self.token_ids}
        if self.texts:
            obj.update(texts=self.texts, token_ids=self.all_token_ids)
        if self.scores:
            obj["scores"] = self.scores
        obj.update(finish_reason=self.finish_reason, usage=self.usage)
        if self.constraint is not None:
            obj["constraint"] = self.constraint
        return obj

    @property
    def constraint(self) -> dict[str, Any] | None:
        """Under a constraint, its kind and whether every returned sequence completes it, as JSON outputs say."""
        held = self.extra.get("constraint")
        return {"kind": held["kind"], "satisfied": held["satisfied"]} if held else None


class PrefixCache:
    """The keys and values of one conversation's last generation, kept for the next one.

    A chat re-applies the template over the whole history each turn, so each prompt starts with the
    tokens of the previous prompt and reply: handing their cache to `generate` spares re-encoding
    them. `generate` reuses the longest common prefix and keeps the cache up to date; plain dynamic
    caches only (sliding-window and recurrent layers cannot be cut back to a prefix).
    """

    def __init__(self) -> None:
        self.cache: Any = None
        self.token_ids: list[int] = []

    def clear(self) -> None:
        self.cache, self.token_ids = None, []

    def take(self, model: Any, prompt: list[int]) -> tuple[Any, int]:
        """A cache holding the longest prefix of `prompt` it can (at least one token left to compute), and its length."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        if self.cache is None:
            cache = DynamicCache(config=model.config.get_text_config(decoder=True))
            if not all(type(layer) is DynamicLayer for layer in cache.layers):
                return None, 0
            self.cache, self.token_ids = cache, []
        common = 0
        for cached, new in zip(self.token_ids, prompt[:-1]):
            if cached != new:
                break
            common += 1
        held = self.cache.get_seq_length()
        if common == 0:
            self.cache.reset()
        elif common < held:
            self.cache.crop(common - held)
        self.token_ids = self.token_ids[:common]
        return self.cache, common

    def keep(self, sequence: list[int]) -> None:
        """After generating: remember which tokens the cache now holds (all but the last one generated)."""
        self.token_ids = sequence[: self.cache.get_seq_length()]


class Engine:
    """A loaded model and tokenizer with the operations every command needs."""

    def __init__(self, loaded: models.LoadedModel) -> None:
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.info = loaded.info
        self._trust_remote_code = loaded.trust_remote_code
        self._assistants: dict[str, tuple[Any, Any | None]] = {}
        self._noticed: set[str] = set()
        self._compiled_length = 0

    @classmethod
    def load(cls, spec: str, **kwargs: Any) -> Engine:
        """Load a model spec (see `llmgen.models.load` for the keyword arguments)."""
        _quiet_libraries()
        return cls(models.load(spec, **kwargs))

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, name: str = "model") -> Engine:
        """Wrap a model and tokenizer already in memory (a library user's, or a test's)."""
        models.prepare_tokenizer(tokenizer, model)
        return cls(models.LoadedModel(model, tokenizer, models.describe(model, tokenizer, name=name)))

    @property
    def context_length(self) -> int | None:
        return self.info.context_length

    def free_memory(self) -> int:
        """Bytes free on the model's device now: what a batch may still take."""
        import torch

        device = torch.device(self.model.device)
        if device.type == "cuda":
            return torch.cuda.mem_get_info(device)[0]
        return models.available_memory()

    def model_defaults(self) -> dict[str, Any]:
        """The model's own generation_config: the lowest layer of settings."""
        own = self.model.generation_config.to_diff_dict()
        return {k: v for k, v in own.items() if k not in _OWN_KEYS}

    def plan(self, preset: ResolvedPreset, *overrides: dict[str, Any], seed: int | None = None) -> Plan:
        """Layer the model's defaults, the preset and overrides (lowest first) into a validated Plan (`plans.plan`)."""
        import dataclasses

        base = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, **self.model_defaults()}
        plan = plans.plan(preset, *overrides, base=base, seed=seed)
        config, notice = caches.for_model(plan.config, self.model)
        if notice is not None:
            self._notice(notice)
        return dataclasses.replace(plan, config=config) if config is not plan.config else plan

    def _notice(self, message: str) -> None:
        """A one-line notice on stderr (through llmgen's logger), once per engine."""
        if message not in self._noticed:
            self._noticed.add(message)
            log.warning(message)

    def assistant(self, spec: str) -> tuple[Any, Any | None]:
        """The draft model for assisted decoding, loaded once on the engine's device and dtype.

        Returns the model and, when its vocabulary differs from the main model's, its tokenizer
        (transformers then translates between the two). Its code runs only if the main model's could
        (`--trust-remote-code`).
        """
        if spec not in self._assistants:
            loaded = models.load(
                spec,
                quant=self.info.quant,
                device=self.info.device,
                dtype=self.info.dtype,
                trust_remote_code=self._trust_remote_code,
            )
            same = loaded.tokenizer.get_vocab() == self.tokenizer.get_vocab()
            self._assistants[spec] = (loaded.model, None if same else loaded.tokenizer)
        return self._assistants[spec]

    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        """Log-probability of each completion token under the model, from one forward pass over both."""
        import torch

        if not completion:
            return []
        ids = torch.tensor([prompt + completion], device=self.model.device)
        with torch.no_grad():
            logits = self.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        target = torch.tensor(completion, device=logits.device)[:, None]
        return logits.log_softmax(-1).gather(-1, target).squeeze(-1).tolist()

    def encode(self, request: Request) -> list[int]:
        """Prompt token ids: through the chat template, or the plain text with `raw` (or no template)."""
        if request.raw or self.tokenizer.chat_template is None:
            text = request.prompt if request.prompt is not None else _join(request.messages or [])
            if not text.strip():
                raise UsageError("the prompt is empty")
            return self.tokenizer(text).input_ids
        messages = list(request.messages or [{"role": "user", "content": request.prompt or ""}])
        if not any((m.get("content") or "").strip() for m in messages):
            raise UsageError("the prompt is empty")
        if request.system is not None:
            messages = [{"role": "system", "content": request.system}, *messages]
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def generate(
        self,
        request: Request | list[int],
        plan: Plan,
        on_text: Callable[[str], None] | None = None,
        cache: PrefixCache | None = None,
        inspect: int | None = None,
    ) -> Result:
        """Generate for one request, streaming visible text to `on_text` when the strategy can.

        With a `cache`, the keys and values of the prompt's prefix that the cache holds are reused
        (greedy and sampling only) and the cache is left holding this generation's. With `inspect`
        set, `Result.tokens` gives each new token's log-probability under the model and its `inspect`
        likeliest alternatives. Ctrl-C stops generation and returns what was produced, with
        finish_reason "interrupted".
        """
        prompt = request if isinstance(request, list) else self.encode(request)
        config = self._fit_context(plan.config, len(prompt))
        streamer = TextCallbackStreamer(self.tokenizer, on_text, plan.stops) if plan.streams else None
        import torch

        past, reused = None, 0
        if cache is not None and _reuses_cache(plan.row, config, self.model):
            past, reused = cache.take(self.model, prompt)
            if past is not None and config.cache_implementation is not None:
                config = _without_cache_choice(config)  # the prefix cache is the dynamic one, passed in
        elif cache is not None and plan.row.reuses_cache and config.cache_implementation in caches.CACHES:
            self._notice(f"the {config.cache_implementation} cache is not carried across turns: each reply encodes "
                         "the whole conversation")
        extra = {"past_key_values": past} if past is not None else {}
        input_ids = torch.tensor([prompt], device=self.model.device)
        extra.update(self._constraint(plan, config))
        start = time.perf_counter()
        try:
            with count_drafts(self.model) as drafts:
                output = self._generate(
                    input_ids, torch.ones_like(input_ids), config, plan, streamer, inspect, **extra
                )
        except BaseException as exc:
            if past is not None:
                cache.clear()  # a generation cut short leaves the layers at different lengths
            if streamer is None or not isinstance(exc, KeyboardInterrupt):
                raise
            text = self.tokenizer.decode(streamer.token_ids, skip_special_tokens=True)
            cut = find_stop(text, plan.stops)
            return Result(
                text=text[:cut] if cut >= 0 else text,
                token_ids=streamer.token_ids,
                finish_reason="interrupted",
                prompt_tokens=len(prompt),
                total_s=time.perf_counter() - start,
                ttft_s=streamer.first_token_at - start if streamer.first_token_at else None,
                extra={"cached_tokens": reused},
            )
        total = time.perf_counter() - start
        if past is not None:
            cache.keep(output.sequences[0].tolist())
        ttft = streamer.first_token_at - start if streamer and streamer.first_token_at else None
        result = self._results(output, [len(prompt)], input_ids.shape[1], config, plan, total, ttft, **extra)[0]
        result.extra["cached_tokens"] = reused
        if drafts.rounds:
            result.extra["drafts"] = drafts
        if inspect is not None:
            result.tokens = token_details(self.model, self.tokenizer, output, input_ids.shape[1], inspect)
            del result.tokens[len(result.token_ids) :]
        return result

    def generate_batch(self, requests: Sequence[Request | list[int]], plan: Plan) -> list[Result]:
        """Generate for several requests at once, left-padded; each row matches its own run."""
        prompts = [r if isinstance(r, list) else self.encode(r) for r in requests]
        config = self._fit_context(plan.config, max(map(len, prompts)))
        batch = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        input_ids = batch["input_ids"].to(self.model.device)
        extra = self._constraint(plan, config)
        start = time.perf_counter()
        output = self._generate(input_ids, batch["attention_mask"].to(self.model.device), config, plan, None, **extra)
        total = time.perf_counter() - start
        return self._results(output, list(map(len, prompts)), input_ids.shape[1], config, plan, total, None, **extra)

    def check_fits(self, prompt_tokens: int) -> None:
        """Refuse a prompt that leaves no room in the model's context for a single new token."""
        limit = self.context_length
        if limit is not None and prompt_tokens >= limit:
            raise UsageError(f"the prompt is {prompt_tokens} tokens, longer than the model's context ({limit})")

    def _constraint(self, plan: Plan, config: GenerationConfig) -> dict[str, Any]:
        """`generate`'s logits_processor enforcing the plan's constraint (a fresh one per call), if it has one."""
        if plan.constraint is None:
            return {}
        from transformers import LogitsProcessorList

        from llmgen import constraints

        width = self.model.config.get_text_config(decoder=True).vocab_size
        processor = constraints.processor(plan.constraint, self.tokenizer, width, _as_list(config.eos_token_id))
        return {"logits_processor": LogitsProcessorList([processor])}

    def _fit_context(self, config: GenerationConfig, prompt_tokens: int) -> GenerationConfig:
        """Refuse prompts that fill the context; shorten max_new_tokens so the answer fits."""
        self.check_fits(prompt_tokens)
        limit = self.context_length
        if limit is None:
            return config
        room = limit - prompt_tokens
        if (config.max_new_tokens or 0) <= room:
            return config
        import copy

        config = copy.deepcopy(config)
        config.max_new_tokens = room
        return config

    def _generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        config: GenerationConfig,
        plan: Plan,
        streamer: TextCallbackStreamer | None,
        inspect: int | None = None,
        **extra: Any,
    ) -> GenerateOutput:
        from transformers import set_seed

        from llmgen.decoding import decoding_loop, stop_string_criteria

        if plan.seed is not None:
            set_seed(plan.seed)
        loop = decoding_loop(config, streamer)
        if loop is not None:
            # generate does not hand a callable custom_generate the tokenizer stop strings need.
            config, extra["stopping_criteria"] = stop_string_criteria(config, self.tokenizer)
            extra["custom_generate"] = loop
        if caches.compiles(config, self.model.device.type):
            config = self._compiling(config, input_ids.shape[1])
        if plan.assistant:
            extra["assistant_model"], assistant_tokenizer = self.assistant(plan.assistant)
            if assistant_tokenizer is not None:
                extra["assistant_tokenizer"] = assistant_tokenizer
        return self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=config,
            streamer=streamer,
            tokenizer=self.tokenizer,
            return_dict_in_generate=True,
            output_scores=(config.num_beams or 1) > 1 or bool(config.output_scores),
            output_logits=inspect is not None or bool(config.output_logits),
            **extra,
        )

    def _compiling(self, config: GenerationConfig, prompt_tokens: int) -> GenerationConfig:
        """The config with the decode step compiled over the static cache; says so when compiling will take a while.

        transformers compiles a static cache's decode step on CUDA by itself; elsewhere only when the config's
        `compile_config` asks for every device. Compiled code is kept under llmgen's cache dir, where a later process
        finds it (its compile took half the time in bench/bench_cache.py); a longer cache than before compiles anew.
        """
        import copy
        import os

        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
        from transformers import CompileConfig

        from llmgen.config import cache_dir

        chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")  # torch sets its default there once it has looked
        if chosen is None or os.path.abspath(chosen) == os.path.abspath(default_cache_dir()):
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir() / "inductor")
        config = copy.deepcopy(config)
        if config.compile_config is None:
            config.compile_config = CompileConfig()
        config.compile_config._compile_all_devices = True
        length = prompt_tokens + (config.max_new_tokens or 0)
        if length > self._compiled_length:
            first = self._compiled_length == 0
            self._compiled_length = length
            log.warning("compiling the decode step (torch.compile, static cache)%s: generation pauses after "
                        "the first token while it compiles",
                        "" if first else f" again for a longer cache ({length} tokens)")
        return config

    def _results(
        self,
        output: GenerateOutput,
        prompt_lens: list[int],
        width: int,
        config: GenerationConfig,
        plan: Plan,
        total: float,
        ttft: float | None,
        **extra: Any,
    ) -> list[Result]:
        """Split generate's output into one Result per request, trimmed at eos and stop strings."""
        per_request = config.num_return_sequences or 1
        sequences = output.sequences[:, width:].tolist()
        scores = getattr(output, "sequences_scores", None)
        scores = scores.tolist() if scores is not None else None
        eos = set(_as_list(config.eos_token_id))
        results = []
        for i, prompt_len in enumerate(prompt_lens):
            rows = range(i * per_request, (i + 1) * per_request)
            ids = [_trim(sequences[r], eos, config.pad_token_id) for r in rows]
            texts, reasons = zip(*(self._finish(row, eos, config.max_new_tokens, plan.stops) for row in ids))
            result = Result(
                text=texts[0],
                token_ids=ids[0],
                finish_reason=reasons[0],
                prompt_tokens=prompt_len,
                total_s=total,
                ttft_s=ttft,
            )
            if per_request > 1:
                result.texts, result.all_token_ids, result.finish_reasons = list(texts), ids, list(reasons)
            if scores is not None:
                result.scores = [scores[r] for r in rows]
            if "logits_processor" in extra:
                _check_constraint(result, extra["logits_processor"][0], ids)
            results.append(result)
        return results

    def _finish(self, ids: list[int], eos: set[int], max_new: int, stops: list[str]) -> tuple[str, str]:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = find_stop(text, stops)
        if cut >= 0:
            return text[:cut], "stop"
        if ids and ids[-1] in eos:
            return text, "eos"
        return text, "length" if len(ids) >= max_new else "stop"


def out_of_memory(exc: BaseException) -> bool:
    """Whether an exception from generate means the batch did not fit (CUDA, MPS or the CPU allocator)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    message = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message or "MPS backend out of memory" in message
    )


def release_memory() -> None:
    """Hand cached blocks back after an out-of-memory error, so a smaller retry can fit."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _check_constraint(result: Result, processor: Any, ids: list[list[int]]) -> None:
    """Say in `result.extra["constraint"]` whether every returned sequence completes the constraint, and what the
    masks cost per generated token."""
    compiled = processor.compiled
    satisfied = [compiled.satisfied(row) for row in ids]
    result.extra["constraint"] = {
        **compiled.constraint.describe(),
        "satisfied": all(satisfied),
        "mask_ms_per_token": round(1000 * processor.mask_s / max(1, processor.rows), 3),
    }
    if len(ids) > 1:
        result.extra["constraint"]["satisfied_each"] = satisfied


def _reuses_cache(row: Strategy, config: GenerationConfig, model: Any) -> bool:
    """Whether the strategy takes a cache already holding a prefix, and the config and model give it one it can."""
    return (
        row.reuses_cache
        and config.use_cache is not False
        and config.cache_implementation in (None, "dynamic")
        and model._supports_default_dynamic_cache()
        and not model.config.is_encoder_decoder
    )


def _without_cache_choice(config: GenerationConfig) -> GenerationConfig:
    """generate takes a cache object or a `cache_implementation` to make one, not both."""
    import copy

    config = copy.deepcopy(config)
    config.cache_implementation = None
    return config


def _trim(ids: list[int], eos: set[int], pad: int | None) -> list[int]:
    """New tokens up to and including the first eos; the padding of finished rows dropped."""
    for i, token in enumerate(ids):
        if token in eos:
            return ids[: i + 1]
    while ids and ids[-1] == pad:
        ids = ids[:-1]
    return ids


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


def _join(messages: Sequence[dict[str, str]]) -> str:
    return "\n\n".join(m.get("content") or "" for m in messages)


def _quiet_libraries() -> None:
    """transformers and bitsandbytes log advice meant for developers; llmgen reports what matters."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
