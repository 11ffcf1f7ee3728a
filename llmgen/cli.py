"""The `llmgen` command: each command parses, opens a session, calls its feature's module, and prints.

torch and transformers are imported only inside commands that load a model, so `llmgen --help` and
`llmgen presets list` answer at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from llmgen import console
from llmgen.errors import VERBOSE_HINT, LlmgenError, UsageError, explain
from llmgen.genconfig import FILE_NAME
from llmgen.options import (
    GEN_PANEL,
    OUT_PANEL,
    Command,
    Group,
    ModelOptions,
    Options,
    Session,
    complete_preset,
    complete_preset_list,
    model_options,
    shared_options,
)

RAY_PANEL = "Scaling out (--engine ray)"

if TYPE_CHECKING:
    from llmgen.engine import Result
    from llmgen.plans import Plan

app = typer.Typer(
    name="llmgen",
    cls=Group,
    help="Generate text with open language models on your own machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
presets_app = typer.Typer(cls=Group, help="List, inspect, export and import decoding presets.", no_args_is_help=True)
app.add_typer(presets_app, name="presets")


def _print_version(value: bool) -> None:
    """`--version`: from the installed package's metadata, before anything heavy is imported."""
    if value:
        from llmgen import __version__

        console.out(f"llmgen {__version__}\n")
        raise typer.Exit()


@app.callback()
def _app_options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print llmgen's version and exit."),
    ] = False,
) -> None:
    """Options of llmgen itself, before any command."""


def read_prompt(prompt: str | None) -> str:
    """The prompt argument, or stdin when it is omitted or '-'; an empty one is refused."""
    if prompt is None or prompt == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no prompt given", hint="pass it as an argument or pipe it on stdin")
        try:
            prompt = sys.stdin.buffer.read().decode("utf-8").rstrip("\n")
        except UnicodeDecodeError as exc:
            raise UsageError(f"stdin is not valid UTF-8 (byte {exc.start})") from None
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    return prompt


@app.command(cls=Command)
@shared_options
def run(
    prompt: Annotated[
        Optional[str], typer.Argument(metavar="PROMPT", help="The prompt; omitted or '-' reads stdin.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout instead of text.")] = False,
    n_best: Annotated[
        Optional[int],
        typer.Option("--n-best", min=1, metavar="K", help="Beam presets: the K best beams with their scores.",
                     rich_help_panel=GEN_PANEL),
    ] = None,
    inspect: Annotated[
        bool,
        typer.Option("--inspect", help="Show each generated token with its probability (instead of streaming).",
                     rich_help_panel=OUT_PANEL),
    ] = False,
    top_alternatives: Annotated[
        int,
        typer.Option("--top-alternatives", min=0, metavar="N",
                     help="With --inspect: the N likeliest tokens at each step (implies --inspect).",
                     rich_help_panel=OUT_PANEL),
    ] = 0,
    assistant: Annotated[
        Optional[str],
        typer.Option("--assistant", metavar="MODEL", help="Draft model for assisted (speculative) decoding.",
                     rich_help_panel=GEN_PANEL),
    ] = None,
    opts: Options = None,  # type: ignore[assignment]
) -> None:
    """Generate one answer, streamed to stdout."""
    from llmgen import run as single

    text = read_prompt(prompt)
    session = Session.open(opts, lambda d: d.preset, assistant=assistant)
    plan = single.plan(session, n_best, seed=opts.seed)
    _report_plan(session, plan, opts)
    inspect_top = top_alternatives if inspect or top_alternatives else None
    stream = plan.streams and not json_output and inspect_top is None
    answer = single.generate(session, plan, text, raw=opts.raw, on_text=console.out if stream else None,
                             inspect=inspect_top, stats=opts.stats)

    result = answer.result
    if json_output:
        console.out(json.dumps(single.as_json(session, plan, answer), ensure_ascii=False) + "\n")
    elif result.tokens is not None:
        if result.texts:
            console.out(_beams_text(result) + "\n")
        from llmgen.tokens import render

        render(result.tokens, console.stdout_console())
    elif not stream:
        console.out(_beams_text(result))
    if not json_output and result.tokens is None and console.stdout_is_terminal():
        console.out("\n")
    if opts.stats or opts.verbose:
        console.note(console.stats_line(result, plan.config.max_new_tokens, "-n"))
    _warn_unsatisfied(result, "-n")
    if answer.drafting is not None:
        console.note(answer.drafting.line())
    if result.finish_reason == "interrupted":
        raise typer.Exit(130)


def _warn_unsatisfied(result: Result, raise_with: str) -> None:
    """A constrained output cut short (max_new_tokens) is never passed off as complete."""
    constraint = result.extra.get("constraint")
    if constraint and not constraint["satisfied"] and result.finish_reason != "interrupted":
        console.warning(f"the output does not complete the {constraint['kind']} constraint "
                        f"(finish: {result.finish_reason}); raise {raise_with}")


def _beams_text(result: Result) -> str:
    if not result.texts:
        return result.text
    blocks = []
    for i, text in enumerate(result.texts):
        score = f" score {result.scores[i]:.3f}" if result.scores else ""
        blocks.append(f"[{i + 1}]{score}\n{text}\n")
    return "\n".join(blocks)


def _report_plan(session: Session, plan: Plan, opts: Options) -> None:
    if opts.verbose:
        info = session.engine.info
        console.note(
            f"model {info.model} · {info.device} · {info.dtype} · quant {info.quant} ({info.quant_reason}) "
            f"· loaded in {info.load_s:.2f}s"
        )
        console.note(f"preset {plan.preset} · strategy {plan.strategy}")
    if not opts.quiet:
        for warning in plan.warnings:
            console.warning(warning)


@app.command(cls=Command)
@model_options
def info(
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object on stdout instead of a table.")
    ] = False,
    opts: ModelOptions = None,  # type: ignore[assignment]
) -> None:
    """Show the resolved model: source, size, dtype, quantization, device, memory, context, generation config."""
    from llmgen.config import load_defaults

    engine = opts.load(load_defaults())
    data = {**engine.info.as_dict(), "generation_config": engine.model_defaults()}
    if json_output:
        console.out(json.dumps(data) + "\n")
        return
    from rich.table import Table

    table = Table(show_header=False, box=None)
    rows = {
        "model": data["model"],
        "source": f"{data['source']}: {data['path']}",
        "architecture": data["architecture"],
        "parameters": f"{data['parameters'] / 1e6:.1f}M",
        "dtype": data["dtype"],
        "quantization": f"{data['quant']} ({data['quant_reason']})",
        "device": data["device"],
        "memory": f"{data['memory_bytes'] / (1 << 20):.0f} MiB",
        "context length": str(data["context_length"]),
        "chat template": "yes" if data["chat_template"] else "no",
        "load time": f"{data['load_s']:.2f}s",
        "generation config": ", ".join(f"{k}={v!r}" for k, v in data["generation_config"].items()) or "none",
    }
    for key, value in rows.items():
        table.add_row(f"[bold]{key}[/]", value)
    console.stdout_console(highlight=True).print(table)


@presets_app.command("list", cls=Command)
def presets_list() -> None:
    """Every preset: built-in and yours (~/.config/llmgen/presets), with the strategy it selects."""
    from llmgen import preset_views

    rows = preset_views.listing()
    if console.stdout_is_terminal():
        preset_views.render_list(rows, console.stdout_console(highlight=True))
    else:
        console.out(preset_views.plain_list(rows))


@presets_app.command("show", cls=Command)
def presets_show(
    name: Annotated[
        str, typer.Argument(metavar="NAME", autocompletion=complete_preset,
                            help="Preset name, YAML or generation-config JSON path, or 'model'.")
    ],
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Also: the method that runs, the logits processors and stopping criteria "
                     "transformers builds, in order, and the settings this strategy ignores."),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", metavar="SPEC",
                     help="Also show what this model's own generation_config sets (loads it; 'model' always does)."),
    ] = None,
) -> None:
    """One preset resolved: its YAML, its extends chain, the settings it amounts to and its strategy."""
    from llmgen import genconfig, preset_views, presets
    from llmgen.config import load_defaults

    preset = presets.load(name)
    engine = None
    if model is not None or name == genconfig.MODEL:
        engine = ModelOptions(model=model).load(load_defaults())
    for warning in preset_views.show(preset, console.stdout_console(highlight=True), explain=explain, engine=engine):
        console.warning(warning)


@presets_app.command("export", cls=Command)
def presets_export(
    name: Annotated[
        str, typer.Argument(metavar="NAME", autocompletion=complete_preset, help="Preset name or YAML path.")
    ],
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", metavar="DIR", help="Folder to write into (made if missing).")
    ] = Path("."),
    file_name: Annotated[
        str, typer.Option("--file-name", metavar="NAME.json", help="The file's name.")
    ] = FILE_NAME,
) -> None:
    """Write a preset's effective settings as a transformers generation-config file; prints its path."""
    from llmgen import preset_files, presets

    target, left_out = preset_files.export(presets.load(name), output_dir, file_name)
    if left_out:
        console.warning(f"not in {target.name}: {', '.join(left_out)} (preset keys a generation config cannot hold)")
    console.out(f"{target}\n")


@presets_app.command("import", cls=Command)
def presets_import(
    file: Annotated[Path, typer.Argument(metavar="FILE.json", help="A transformers generation-config file.")],
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="The new preset's name.")],
    description: Annotated[
        str | None, typer.Option("--description", metavar="TEXT", help="The new preset's description.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a preset of that name.")] = False,
) -> None:
    """Make a generation-config file a user preset (YAML in ~/.config/llmgen/presets); prints its path."""
    from llmgen import preset_files

    console.out(f"{preset_files.import_file(file, name, description, force)}\n")


@app.command(cls=Command)
@shared_options
def compare(
    prompt: Annotated[
        Optional[str], typer.Argument(metavar="PROMPT", help="The prompt; omitted or '-' reads stdin.")
    ] = None,
    preset_names: Annotated[
        Optional[str],
        typer.Option("--presets", metavar="A,B,C", autocompletion=complete_preset_list,
                     help="Presets to compare (default: each built-in strategy preset); 'assisted' with --assistant."),
    ] = None,
    assistant: Annotated[
        Optional[str],
        typer.Option("--assistant", metavar="MODEL", help="Also compare greedy decoding drafted by this model."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout instead of a table.")] = False,
    opts: Options = None,  # type: ignore[assignment]
) -> None:
    """The same prompt under several presets, side by side, with measures of each output."""
    from llmgen import compare as comparing
    from llmgen.engine import Request

    text = read_prompt(prompt)
    chosen = comparing.choose(preset_names, assistant)
    session = Session.open(opts, lambda d: d.preset)
    request = Request(prompt=text, system=session.system, raw=opts.raw)
    comparison = comparing.run(session, request, chosen, opts.seed, verbose=opts.verbose)
    if json_output:
        obj = comparing.as_json(text, session.engine.info.model, comparison)
        console.out(json.dumps(obj, ensure_ascii=False) + "\n")
    else:
        comparing.render(text, comparison, console.stdout_console())
    if opts.stats or opts.verbose:
        for outcome in comparison.outcomes:
            console.note(f"{outcome.preset}: " + console.stats_line(outcome.result, None))
    if comparison.interrupted:
        if not opts.quiet:
            cut = [o.preset for o in comparison.outcomes if o.interrupted]
            console.note("compare: interrupted" + (f" during {cut[0]}" if cut else "")
                         + (f"; not run: {', '.join(comparison.not_run)}" if comparison.not_run else ""))
        raise typer.Exit(130)


@app.command(cls=Command)
@shared_options
def batch(
    input: Annotated[
        str,
        typer.Argument(metavar="INPUT",
                       help="JSONL file of records ({\"id\", \"prompt\"|\"messages\", ...}); '-' reads stdin."),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="FILE", help="JSONL file for the results; '-' is stdout.")
    ] = "-",
    batch_size: Annotated[
        str, typer.Option(metavar="N|auto", help="Records per generate call; auto: from free memory.")
    ] = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run: skip records already in the output.")
    ] = False,
    engine: Annotated[
        str, typer.Option(metavar="local|ray", help="Who runs the records: this process, or Ray workers.",
                          rich_help_panel=RAY_PANEL)
    ] = "local",
    ray_address: Annotated[
        Optional[str], typer.Option(metavar="ADDRESS", show_default="$RAY_ADDRESS, else a local Ray for the run",
                                    help="The Ray cluster to join.", rich_help_panel=RAY_PANEL)
    ] = None,
    workers: Annotated[
        Optional[int], typer.Option(metavar="N", show_default="as the cluster's resources allow",
                                    help="Ray workers, each loading the model once.", rich_help_panel=RAY_PANEL)
    ] = None,
    cpus_per_worker: Annotated[
        float, typer.Option(metavar="N", help="CPUs (and torch threads) per Ray worker.", rich_help_panel=RAY_PANEL)
    ] = 1.0,
    gpus_per_worker: Annotated[
        Optional[float], typer.Option(metavar="N", show_default="1 when the cluster has GPUs",
                                      help="GPUs per Ray worker.", rich_help_panel=RAY_PANEL)
    ] = None,
    opts: Options = None,  # type: ignore[assignment]
) -> None:
    """Run every record of a JSONL file through the model, batched; results in input order."""
    from llmgen.batch import run_command
    from llmgen.batch.cluster import cluster_options

    cluster = cluster_options(engine, ray_address, workers, cpus_per_worker, gpus_per_worker)
    if run_command(opts, input, output, batch_size, resume, cluster).failed:
        raise typer.Exit(3)


@app.command(cls=Command)
@shared_options
def chat(
    load: Annotated[
        Optional[Path], typer.Option("--load", help="Continue a transcript saved with /save.", metavar="FILE")
    ] = None,
    opts: Options = None,  # type: ignore[assignment]
) -> None:
    """Chat with the model: replies stream, slash commands steer (/help); stdin may be a pipe."""
    from llmgen.chat import Conversation, Flags, read_transcript
    from llmgen.repl import Chat, run

    if load is not None:
        read_transcript(load)  # a bad file fails before the model loads
    session = Session.open(opts, lambda d: d.chat_preset)
    conversation = Conversation(
        session.engine, session.preset, overrides=session.overrides, system=session.system, raw=opts.raw,
        seed=opts.seed,
    )
    chat = Chat(conversation, interactive=sys.stdin.isatty(), stats=opts.stats or opts.verbose, quiet=opts.quiet,
                verbose=opts.verbose)
    if load is not None:
        chat.restore(load, Flags(session.overrides, session.preset if opts.preset else None, opts.system))
    run(chat)


def main() -> None:
    """The one error boundary: bad input is one line and exit 2, failures exit 1, Ctrl-C exits 130."""
    verbose = any(arg in ("-v", "--verbose") for arg in sys.argv[1:])
    console.show_library_messages(verbose, quiet=any(arg in ("-q", "--quiet") for arg in sys.argv[1:]))
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors
        if exc.format_message():  # none when the help was shown instead (a command given no arguments)
            console.error(exc.format_message(), hint=_usage_hint(exc))
        code = getattr(exc, "exit_code", 2)
    except (KeyboardInterrupt, typer.Abort):
        console.err.print()
        code = 130
    except LlmgenError as exc:
        if verbose:
            console.err.print_exception()
        console.error(str(exc), hint=exc.hint)
        code = exc.exit_code
    except Exception as exc:  # the boundary: a library's failure in the user's words, one line unless -v
        if verbose:
            console.err.print_exception()
        error = explain(exc)
        console.error(str(error), hint=None if verbose and error.hint == VERBOSE_HINT else error.hint)
        code = error.exit_code
    sys.exit(code if isinstance(code, int) else 0)


def _usage_hint(exc: typer.TyperException) -> str | None:
    if getattr(exc, "ctx", None) is None:
        return None
    return f"try '{exc.ctx.command_path} --help'"
