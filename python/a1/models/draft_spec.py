"""Draft specifications: the one place a draft named by a string is understood.

    "self"                    the target drafts for itself (self mode: one model, one engine)
    "self:skip=A-B[,C-D...]"  a layer-skip self-draft: the target's own layers minus the ranges
                              given (inclusive, 0-based; "15" alone is "15-15"), same weights, no copy
    DIR with a1_draft.json    a distilled draft of `a1 distill-draft` (its layers; the target's
                              embedding and LM head)
    anything else             a model of its own (HF directory, .gguf, built-in name)

`load_draft` turns the two target-derived kinds into a LoadedModel over the loaded target; it returns
None for the others, which a1.LLM loads as models of their own.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .draft_dir import MARKER, load_distilled_draft  # MARKER: the file that makes a directory a distilled draft

SKIP_PREFIX = "self:skip="
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


@dataclass(frozen=True)
class SkipSpec:
    """The layers a layer-skip self-draft leaves out, as sorted inclusive ranges."""

    ranges: tuple[tuple[int, int], ...]

    def kept_layers(self, num_layers: int, name: str = "draft") -> list[int]:
        """The target's layer indices the draft runs, in order; ValueError naming `name` when a range
        falls outside [0, num_layers) or nothing would be left to run."""
        for a, b in self.ranges:
            if b >= num_layers:
                raise ValueError(f"{name}: skip range {a}-{b} is out of range: the target has layers 0-{num_layers - 1}")
        skipped = {i for a, b in self.ranges for i in range(a, b + 1)}
        kept = [i for i in range(num_layers) if i not in skipped]
        if not kept:
            raise ValueError(f"{name}: skip={self.text()} skips all {num_layers} layers of the target; keep at least one")
        return kept

    def text(self) -> str:
        return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ranges)

    def __str__(self) -> str:
        return SKIP_PREFIX + self.text()


def is_skip_spec(draft: object) -> bool:
    return isinstance(draft, str) and draft.strip().startswith(SKIP_PREFIX)


def parse_skip_spec(draft: str, name: str = "draft") -> SkipSpec:
    """`self:skip=A-B[,C-D...]` -> SkipSpec; ValueError naming `name` for a malformed, reversed or
    overlapping range (the layer count is checked by SkipSpec.kept_layers, once the target is known)."""
    text = draft.strip()
    if not text.startswith(SKIP_PREFIX):
        raise ValueError(f"{name}: {draft!r} is not a layer-skip spec ({SKIP_PREFIX}A-B[,C-D...])")
    body = text[len(SKIP_PREFIX):]
    if not body.strip():
        raise ValueError(f"{name}: {draft!r} names no layers; e.g. {SKIP_PREFIX}14-16")
    ranges: list[tuple[int, int]] = []
    for part in body.split(","):
        match = _RANGE.match(part)
        if match is None:
            raise ValueError(f"{name}: {part.strip()!r} in {draft!r} is not a layer range A-B or a layer A "
                             "(0-based, non-negative integers)")
        a = int(match.group(1))
        b = a if match.group(2) is None else int(match.group(2))
        if b < a:
            raise ValueError(f"{name}: range {a}-{b} in {draft!r} is reversed; write {b}-{a}")
        ranges.append((a, b))
    ranges.sort()
    for (a0, b0), (a1, b1) in zip(ranges, ranges[1:]):
        if a1 <= b0:
            raise ValueError(f"{name}: ranges {a0}-{b0} and {a1}-{b1} in {draft!r} overlap")
    return SkipSpec(tuple(ranges))


def is_distilled_dir(draft: object) -> bool:
    """Whether `draft` names a directory written by `a1 distill-draft` (it holds MARKER)."""
    if not isinstance(draft, (str, os.PathLike)) or is_skip_spec(draft):
        return False
    path = Path(draft).expanduser()
    return path.is_dir() and (path / MARKER).is_file()


def load_draft(draft: Union[str, os.PathLike, None], target, name: str = "draft"):
    """A LoadedModel for a draft derived from `target` (a LoadedModel): a layer-skip spec or a
    distilled draft directory; None when `draft` is neither (a model of its own, "self", None)."""
    from .loader import LoadedModel

    if is_skip_spec(draft):
        from .draft_model import skip_draft

        spec = parse_skip_spec(str(draft), name)
        kept = spec.kept_layers(target.config.num_layers, name)
        model = skip_draft(target.model, kept)
        return LoadedModel(model=model, tokenizer=target.tokenizer, config=model.config, source=str(spec))
    if is_distilled_dir(draft):
        model = load_distilled_draft(Path(draft).expanduser(), target, name=name)
        return LoadedModel(model=model, tokenizer=target.tokenizer, config=model.config, source=str(draft))
    return None


def draft_label(draft: Optional[str]) -> str:
    """A short label of a draft spec for file names and tables ("self", "skip14-16", a dir's name)."""
    if draft in (None, "self"):
        return "self"
    if is_skip_spec(draft):
        return "skip" + parse_skip_spec(str(draft)).text().replace(",", "_")
    return Path(str(draft)).name or str(draft)
