"""Token inspection: each generated token with its probability under the model and its likeliest rivals.

Probabilities come from the raw logits `generate` returns with `output_logits=True` (before
temperature, top-k/p or penalties), so they are the model's own and agree with a plain forward
pass over prompt and output, whatever strategy picked the tokens. Under beam search the logits of
the beam that produced each token are used (`beam_indices`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# Probability thresholds for colours, highest first; below the last, red.
COLOURS = ((0.9, "green"), (0.5, "yellow"), (0.2, "dark_orange"))
LOW_COLOUR = "red"


@dataclass
class Candidate:
    id: int
    text: str
    logprob: float

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


@dataclass
class TokenInfo(Candidate):
    """A generated token; `alternatives` are the likeliest tokens at its step (it may be among them)."""

    alternatives: list[Candidate] = field(default_factory=list)
    dola_layer: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The `tokens` entry of `run --json`."""
        obj: dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "logprob": round(self.logprob, 6),
            "alternatives": [{**asdict(a), "logprob": round(a.logprob, 6)} for a in self.alternatives],
        }
        if self.dola_layer is not None:
            obj["dola_layer"] = self.dola_layer
        return obj


def token_details(model: Any, tokenizer: Any, output: Any, width: int, alternatives: int, row: int = 0) -> list[TokenInfo]:
    """Per-token details of output row `row` from a `generate` output made with `output_logits=True`.

    `width` is the prompt length in `output.sequences`. A decoding loop may add `premature_layers`
    to its output (one entry a step: an int, or one per row) to report DoLa's chosen layer.
    """
    import torch

    logits = output.logits
    if not logits:
        return []
    beam_indices = getattr(output, "beam_indices", None)
    chosen = model.compute_transition_scores(output.sequences, logits, beam_indices, normalize_logits=True)[row]
    ids = output.sequences[row, width : width + len(logits)].tolist()
    layers = getattr(output, "premature_layers", None)
    texts = tokenizer.batch_decode([[i] for i in ids])
    tokens = []
    for step, (token, text) in enumerate(zip(ids, texts)):
        info = TokenInfo(token, text, float(chosen[step]))
        if alternatives > 0:
            source = int(beam_indices[row, step]) if beam_indices is not None else row
            top = torch.log_softmax(logits[step][source].float(), dim=-1).topk(alternatives)
            alt_ids = top.indices.tolist()
            info.alternatives = [
                Candidate(i, t, lp)
                for i, t, lp in zip(alt_ids, tokenizer.batch_decode([[i] for i in alt_ids]), top.values.tolist())
            ]
        if layers is not None:
            layer = layers[step]
            info.dola_layer = int(layer if isinstance(layer, int) else layer[row])
        tokens.append(info)
    return tokens


def colour(prob: float) -> str:
    return next((name for threshold, name in COLOURS if prob >= threshold), LOW_COLOUR)


def render(tokens: list[TokenInfo], console: Console) -> None:
    """The output coloured token by token, then one line per token with its probability and rivals."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    text = Text()
    for token in tokens:
        text.append(token.text, style=colour(token.prob))
    console.print(text)
    legend = " · ".join(f"[{name}]≥{threshold:g}[/]" for threshold, name in COLOURS) + f" · [{LOW_COLOUR}]lower[/]"
    console.print(f"[dim]probability:[/] {legend}\n")

    table = Table("#", "token", "prob", "logprob", box=None, pad_edge=False)
    with_layers = any(t.dola_layer is not None for t in tokens)
    if with_layers:
        table.add_column("layer", justify="right")
    if any(t.alternatives for t in tokens):
        table.add_column("alternatives")
    for n, token in enumerate(tokens, 1):
        cells = [str(n), escape(repr(token.text)), f"[{colour(token.prob)}]{token.prob:.3f}[/]", f"{token.logprob:.3f}"]
        if with_layers:
            cells.append("" if token.dola_layer is None else str(token.dola_layer))
        if token.alternatives:
            cells.append("  ".join(f"{escape(repr(a.text))} {a.prob:.3f}" for a in token.alternatives))
        table.add_row(*cells)
    console.print(table)
