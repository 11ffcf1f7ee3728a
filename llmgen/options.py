"""The options the commands share, and how they resolve into an engine and a plan.

`ModelOptions` declares each flag that picks and loads a model once (info takes them alone);
`Options` adds the generation and output flags run, chat, batch and compare share. `shared_options`
and `model_options` add a group's flags to a Typer command, which receives them as one `opts`
argument. `Session.open` applies SPEC.md's precedence: the preset is loaded and planned under the
command line's settings before the model loads (`llmgen.plans`, as the engine plans once it has),
so bad input fails fast.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from llmgen import config

if TYPE_CHECKING:
    from llmgen.constraints import Constraint
    from llmgen.engine import Engine, Plan
    from llmgen.presets import ResolvedPreset

MODEL_PANEL = "Model"
GEN_PANEL = "Generation"
OUT_PANEL = "Output"
CONSTRAINT_PANEL = "Structured output (one of)"

FROM_PRESET = "from the preset"
"""How help shows the default of a setting the preset gives unless the flag does."""


def _default(key: str) -> str:
    return str(config.Defaults.model_fields[key].default)


def configured(key: str) -> str:
    """How help shows a default that config.yaml or $LLMGEN_KEY may change."""
    return f"{_default(key)}, or config.yaml / $LLMGEN_{key.upper()}"


def complete_preset(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion: preset names (built-in and the user's, and `model`) that start with what is typed."""
    from llmgen import genconfig, presets

    found = [(name, "built-in" if found.builtin else "user") for name, found in sorted(presets.discover().items())]
    own = [(genconfig.MODEL, "the model's own generation_config")]
    return [(name, kind) for name, kind in found + own if name.startswith(incomplete)]


def complete_preset_list(incomplete: str) -> list[str]:
    """Shell completion for `--presets A,B,C`: the names that can follow the last comma."""
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + name for name, _ in complete_preset(last)]


class _PlainTypes:
    """Help shows no `<bool>` beside a flag, which takes no value, nor `<str>` beside a named argument.

    Typer's rich help prints the Python type of each parameter unless it has a metavar; the metavars
    given here (`-n N`, `--stop TEXT`, `PROMPT`) say more, and a flag needs none.
    """

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            if isinstance(param, TyperArgument) and param.metavar:
                param.display_type_rich = _no_type  # type: ignore[method-assign]
        return params


def _no_type(ctx: typer.Context) -> None:
    return None


class Command(_PlainTypes, TyperCommand):
    """A command whose help lists flags and arguments by their metavars alone."""


class Group(_PlainTypes, TyperGroup):
    """A group whose help lists flags by name alone."""


@dataclass
class ModelOptions:
    """The flags that pick and load a model: every command that loads one takes them."""

    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", metavar="SPEC", show_default=configured("model"),
                     help="builtin, a model directory, a .gguf file or a cached Hub id.", rich_help_panel=MODEL_PANEL),
    ] = None
    quant: Annotated[
        Optional[config.Quant],
        typer.Option(metavar="|".join(typing.get_args(config.Quant)), show_default=configured("quant"),
                     help="bitsandbytes quantization (a preset may choose one); auto: 4-bit on CUDA or when memory "
                     "is short.", rich_help_panel=MODEL_PANEL),
    ] = None
    device: Annotated[
        Optional[str],
        typer.Option(metavar="DEVICE", show_default=configured("device"),
                     help="auto (cuda, else mps, else cpu), cpu, mps or cuda[:N].", rich_help_panel=MODEL_PANEL),
    ] = None
    dtype: Annotated[
        Optional[config.DType],
        typer.Option(metavar="|".join(typing.get_args(config.DType)), show_default=configured("dtype"),
                     help="Weights and compute; auto: bfloat16 (else float16) on CUDA, float16 on mps, float32 on CPU.",
                     rich_help_panel=MODEL_PANEL),
    ] = None
    trust_remote_code: Annotated[
        bool,
        typer.Option("--trust-remote-code", help="Run code shipped with the model (off by default).",
                     rich_help_panel=MODEL_PANEL),
    ] = False
    threads: Annotated[
        Optional[int],
        typer.Option(metavar="N", min=1, show_default=configured("threads"),
                     help="CPU threads for torch (default: torch's choice, the physical cores).",
                     rich_help_panel=MODEL_PANEL),
    ] = None

    def load(self, defaults: config.Defaults, preset_quant: config.Quant | None = None) -> Engine:
        """The engine these flags ask for; what they leave out comes from the preset, then the defaults."""
        from llmgen.engine import Engine
        from llmgen.models import use_threads

        use_threads(self.threads or defaults.threads)
        return Engine.load(
            self.model or defaults.model,
            quant=self.quant or preset_quant or defaults.quant,
            device=self.device or defaults.device,
            dtype=self.dtype or defaults.dtype,
            trust_remote_code=self.trust_remote_code,
        )


@dataclass
class Options(ModelOptions):
    """The model flags plus the generation and output flags run, chat, batch and compare share."""

    preset: Annotated[
        Optional[str],
        typer.Option("--preset", "-p", metavar="NAME|FILE", autocompletion=complete_preset,
                     show_default=f"{_default('preset')}, chat: {_default('chat_preset')}; or config.yaml / "
                     "$LLMGEN_PRESET, $LLMGEN_CHAT_PRESET",
                     help="A preset name, a preset YAML file, a generation-config .json file, or 'model' (the model's own "
                     "generation_config alone).", rich_help_panel=GEN_PANEL),
    ] = None
    max_new_tokens: Annotated[
        Optional[int],
        typer.Option("--max-new-tokens", "-n", metavar="N", show_default=FROM_PRESET,
                     help="Generate at most N new tokens.", rich_help_panel=GEN_PANEL),
    ] = None
    temperature: Annotated[
        Optional[float],
        typer.Option("--temperature", "-t", metavar="T", show_default=FROM_PRESET,
                     help="Sampling temperature (turns sampling on; 0 means greedy).", rich_help_panel=GEN_PANEL),
    ] = None
    top_p: Annotated[
        Optional[float],
        typer.Option(metavar="P", show_default=FROM_PRESET,
                     help="Sample from the likeliest tokens whose probabilities add up to P (turns sampling on).",
                     rich_help_panel=GEN_PANEL),
    ] = None
    top_k: Annotated[
        Optional[int],
        typer.Option(metavar="K", show_default=FROM_PRESET, help="Keep only the K likeliest tokens at each step.",
                     rich_help_panel=GEN_PANEL),
    ] = None
    min_p: Annotated[
        Optional[float],
        typer.Option(metavar="P", show_default=FROM_PRESET,
                     help="Drop tokens less likely than P times the likeliest one (turns sampling on).",
                     rich_help_panel=GEN_PANEL),
    ] = None
    repetition_penalty: Annotated[
        Optional[float],
        typer.Option(metavar="X", show_default=FROM_PRESET,
                     help="Discourage tokens already in the text; 1 is none, above 1 penalizes.",
                     rich_help_panel=GEN_PANEL),
    ] = None
    num_beams: Annotated[
        Optional[int],
        typer.Option(metavar="N", show_default=FROM_PRESET, help="Beam search with N beams (1: no beam search).",
                     rich_help_panel=GEN_PANEL),
    ] = None
    num_return_sequences: Annotated[
        Optional[int],
        typer.Option(metavar="N", show_default=FROM_PRESET, help="Return N answers (sampled, or the N best beams).",
                     rich_help_panel=GEN_PANEL),
    ] = None
    seed: Annotated[
        Optional[int],
        typer.Option(metavar="N", show_default="random", help="Make sampling reproducible (0 to 2**32-1).",
                     min=0, max=config.MAX_SEED, rich_help_panel=GEN_PANEL),
    ] = None
    stop: Annotated[
        Optional[list[str]],
        typer.Option(metavar="TEXT", show_default=FROM_PRESET,
                     help="Stop when this text appears (repeatable); it is not printed.", rich_help_panel=GEN_PANEL),
    ] = None
    set: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE", help="Any GenerationConfig setting (repeatable).",
                     rich_help_panel=GEN_PANEL),
    ] = None
    system: Annotated[
        Optional[str],
        typer.Option(metavar="TEXT", show_default=FROM_PRESET, help="System prompt.", rich_help_panel=GEN_PANEL),
    ] = None
    raw: Annotated[
        bool, typer.Option("--raw", help="No chat template: plain completion of the text.", rich_help_panel=GEN_PANEL)
    ] = False
    cache: Annotated[
        Optional[str],
        typer.Option(metavar="dynamic|static|quantized|offloaded", show_default=f"{FROM_PRESET}, else dynamic",
                     help="KV cache: quantized (HQQ, needs llmgen\\[kv]) for long generations on little memory, "
                     "offloaded to CPU memory (GPU only), static (for --compile).", rich_help_panel=GEN_PANEL),
    ] = None
    compile: Annotated[
        Optional[bool],
        typer.Option("--compile/--no-compile", show_default="on CUDA with the static cache, off on the CPU",
                     help="Compile the decode step with torch.compile over the static cache (implies --cache "
                     "static); the first call compiles.", rich_help_panel=GEN_PANEL),
    ] = None
    json_schema: Annotated[
        Optional[str],
        typer.Option("--json-schema", metavar="FILE|JSON",
                     help="The output is JSON valid under this JSON Schema (a file, or the schema inline).",
                     rich_help_panel=CONSTRAINT_PANEL),
    ] = None
    json_object: Annotated[
        bool,
        typer.Option("--json-object", help="The output is a JSON object (any).", rich_help_panel=CONSTRAINT_PANEL),
    ] = False
    regex: Annotated[
        Optional[str],
        typer.Option("--regex", metavar="PATTERN", help="The output matches this regular expression (Rust regex "
                     "syntax, anchored at both ends).", rich_help_panel=CONSTRAINT_PANEL),
    ] = None
    grammar: Annotated[
        Optional[str],
        typer.Option("--grammar", metavar="FILE", help="The output follows this grammar: llama.cpp's GBNF, or "
                     "llguidance's Lark-like EBNF (a file, or the grammar inline).", rich_help_panel=CONSTRAINT_PANEL),
    ] = None
    choice: Annotated[
        Optional[str],
        typer.Option("--choice", metavar="A,B,C", help="The output is exactly one of these comma-separated strings.",
                     rich_help_panel=CONSTRAINT_PANEL),
    ] = None
    stats: Annotated[
        bool,
        typer.Option("--stats", help="Tokens, time to first token and tokens/s on stderr.", rich_help_panel=OUT_PANEL),
    ] = False
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say what was loaded and chosen; tracebacks on errors.",
                           rich_help_panel=OUT_PANEL)
    ] = False
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No warnings or notes.", rich_help_panel=OUT_PANEL)
    ] = False

    def overrides(self) -> dict[str, Any]:
        """Generation settings from the command line: the flags, then `--set` pairs."""
        from llmgen.settings import imply_sampling, parse_set

        flags = {
            key: getattr(self, key)
            for key in ("max_new_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                        "num_beams", "num_return_sequences")
            if getattr(self, key) is not None
        }
        if self.stop:
            flags["stop_strings"] = list(self.stop)
        if self.cache is not None:
            flags["cache_implementation"] = self.cache
        if self.compile is not None:
            flags["disable_compile"] = not self.compile
            if self.compile and self.cache is None:
                flags["cache_implementation"] = "static"
        settings = imply_sampling({**flags, **parse_set(self.set or [])})
        constraint = self.constraint()
        return {**settings, **constraint.written} if constraint else settings

    def constraint(self) -> Constraint | None:
        """The structured-output constraint the flags ask for (checked: bad input fails here, before any load)."""
        from llmgen.constraints import from_flags

        return from_flags({"json_schema": self.json_schema, "json_object": self.json_object, "regex": self.regex,
                           "grammar": self.grammar, "choice": self.choice})


def _with_options(group: type[ModelOptions]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator giving a Typer command every flag of `group`; the command receives them as `opts`."""
    hints = typing.get_type_hints(group, include_extras=True)
    fields = dataclasses.fields(group)
    extra = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in fields
    ]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != "opts"]
        parameters = own + extra

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            shared = {f.name: kwargs.pop(f.name) for f in fields}
            return func(opts=group(**shared), **kwargs)

        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate


shared_options = _with_options(Options)
model_options = _with_options(ModelOptions)


@dataclass
class Session:
    """A loaded engine and a resolved preset: what a command generates with."""

    engine: Engine
    preset: ResolvedPreset
    overrides: dict[str, Any]
    system: str | None
    defaults: config.Defaults

    @classmethod
    def open(cls, opts: Options, default_preset: Callable[[config.Defaults], str], assistant: str | None = None,
             engine: Engine | None = None) -> Session:
        """Load the preset and plan it under the command line's settings (failing before any load), then load the model.

        `assistant`, a draft model spec (`run --assistant`), replaces the preset's. `engine`, one already loaded
        (a library user's, or a test's), is used instead of loading the model the options name.
        """
        defaults, preset, overrides = cls.settle(opts, default_preset, assistant)
        engine = engine or opts.load(defaults, preset.quant)
        system = opts.system if opts.system is not None else preset.system
        return cls(engine, preset, overrides, system, defaults)

    @staticmethod
    def settle(opts: Options, default_preset: Callable[[config.Defaults], str], assistant: str | None = None
               ) -> tuple[config.Defaults, ResolvedPreset, dict[str, Any]]:
        """The defaults, the preset and the command line's settings, planned together: all that fails before a load."""
        from llmgen import plans, presets

        defaults = config.load_defaults()
        preset = presets.load(opts.preset or default_preset(defaults))
        if assistant:
            preset = dataclasses.replace(preset, assistant_model=assistant)
        overrides = opts.overrides()
        plans.plan(preset, overrides, source="command line")
        return defaults, preset, overrides

    def plan(self, *extra: dict[str, Any], seed: int | None = None, preset: ResolvedPreset | None = None) -> Plan:
        """A validated plan for the session's preset (or another), with more settings layered on."""
        return self.engine.plan(preset or self.preset, *extra, self.overrides, seed=seed)
