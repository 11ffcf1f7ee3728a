"""The options run, chat, batch and compare share, and how they resolve into an engine and a plan.

`Options` declares each shared flag once; `shared_options` adds them all to a Typer command, which
receives them as one `opts` argument. `Session.open` applies SPEC.md's precedence: the preset is
resolved and every setting checked before the model loads, so bad input fails fast.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

from llmgen import config

if TYPE_CHECKING:
    from llmgen.engine import Engine, Plan
    from llmgen.presets import ResolvedPreset

MODEL_PANEL = "Model"
GEN_PANEL = "Generation"
OUT_PANEL = "Output"


@dataclass
class Options:
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="builtin, a model directory, a .gguf file or a cached Hub id.",
                     rich_help_panel=MODEL_PANEL),
    ] = None
    quant: Annotated[
        Optional[config.Quant],
        typer.Option(help="bitsandbytes quantization; auto: 4-bit on CUDA or when memory is short.",
                     rich_help_panel=MODEL_PANEL),
    ] = None
    device: Annotated[
        Optional[str], typer.Option(help="auto, cpu, mps or cuda[:N].", rich_help_panel=MODEL_PANEL)
    ] = None
    dtype: Annotated[Optional[config.DType], typer.Option(rich_help_panel=MODEL_PANEL)] = None
    trust_remote_code: Annotated[
        bool, typer.Option(help="Run code shipped with the model (off by default).", rich_help_panel=MODEL_PANEL)
    ] = False
    preset: Annotated[
        Optional[str],
        typer.Option("--preset", "-p", help="A preset name or a path to a preset YAML file.",
                     rich_help_panel=GEN_PANEL),
    ] = None
    max_new_tokens: Annotated[
        Optional[int], typer.Option("--max-new-tokens", "-n", rich_help_panel=GEN_PANEL)
    ] = None
    temperature: Annotated[
        Optional[float],
        typer.Option("--temperature", "-t", help="Sampling temperature (turns sampling on; 0 means greedy).",
                     rich_help_panel=GEN_PANEL),
    ] = None
    top_p: Annotated[Optional[float], typer.Option(rich_help_panel=GEN_PANEL)] = None
    top_k: Annotated[Optional[int], typer.Option(rich_help_panel=GEN_PANEL)] = None
    min_p: Annotated[Optional[float], typer.Option(rich_help_panel=GEN_PANEL)] = None
    repetition_penalty: Annotated[Optional[float], typer.Option(rich_help_panel=GEN_PANEL)] = None
    num_beams: Annotated[Optional[int], typer.Option(rich_help_panel=GEN_PANEL)] = None
    num_return_sequences: Annotated[Optional[int], typer.Option(rich_help_panel=GEN_PANEL)] = None
    seed: Annotated[
        Optional[int], typer.Option(help="Make sampling reproducible.", rich_help_panel=GEN_PANEL)
    ] = None
    stop: Annotated[
        Optional[list[str]],
        typer.Option(help="Stop when this text appears (repeatable); it is not printed.", rich_help_panel=GEN_PANEL),
    ] = None
    set: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE", help="Any GenerationConfig setting (repeatable).",
                     rich_help_panel=GEN_PANEL),
    ] = None
    system: Annotated[Optional[str], typer.Option(help="System prompt.", rich_help_panel=GEN_PANEL)] = None
    raw: Annotated[
        bool, typer.Option(help="No chat template: plain completion of the text.", rich_help_panel=GEN_PANEL)
    ] = False
    stats: Annotated[
        bool, typer.Option(help="Tokens, time to first token and tokens/s on stderr.", rich_help_panel=OUT_PANEL)
    ] = False
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say what was loaded and chosen; tracebacks on errors.",
                           rich_help_panel=OUT_PANEL)
    ] = False
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No warnings or notes.", rich_help_panel=OUT_PANEL)] = False

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
        return imply_sampling({**flags, **parse_set(self.set or [])})


def shared_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a Typer command every `Options` flag; the command receives them as `opts`."""
    hints = typing.get_type_hints(Options, include_extras=True)
    extra = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in dataclasses.fields(Options)
    ]
    signature = inspect.signature(func, eval_str=True)
    own = [p for name, p in signature.parameters.items() if name != "opts"]
    parameters = own + extra

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        shared = {f.name: kwargs.pop(f.name) for f in dataclasses.fields(Options)}
        return func(opts=Options(**shared), **kwargs)

    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


@dataclass
class Session:
    """A loaded engine and a resolved preset: what a command generates with."""

    engine: Engine
    preset: ResolvedPreset
    overrides: dict[str, Any]
    system: str | None
    defaults: config.Defaults

    @classmethod
    def open(cls, opts: Options, default_preset: Callable[[config.Defaults], str]) -> Session:
        """Resolve preset and settings (failing before any load), then load the model."""
        from llmgen import presets, settings

        defaults = config.load_defaults()
        preset = presets.resolve(opts.preset or default_preset(defaults))
        source = str(preset.chain[0].path)
        settings.check(preset.generation, source)
        settings.build_config({}, preset.generation, source=source)
        overrides = opts.overrides()
        settings.check(overrides, "command line")
        settings.build_config({}, preset.generation, overrides, source="command line")

        from llmgen.engine import Engine

        engine = Engine.load(
            opts.model or defaults.model,
            quant=opts.quant or preset.quant or defaults.quant,
            device=opts.device or defaults.device,
            dtype=opts.dtype or defaults.dtype,
            trust_remote_code=opts.trust_remote_code,
        )
        system = opts.system if opts.system is not None else preset.system
        return cls(engine, preset, overrides, system, defaults)

    def plan(self, *extra: dict[str, Any], seed: int | None = None, preset: ResolvedPreset | None = None) -> Plan:
        """A validated plan for the session's preset (or another), with more settings layered on."""
        return self.engine.plan(preset or self.preset, *extra, self.overrides, seed=seed)
