"""Log-probs of a server that tokenizes text itself, carried back onto our tokens.

A server that takes text prompts only (llama-cpp-python's) computes on ITS tokenization of the
history's text, which can differ from the ids we hold: a model may write "\\n" "\\n" where the
tokenizer would write one "\\n\\n". Both tokenizations spell the same text, so they can be cut
into segments where their token boundaries coincide: most segments are one token on each side
(the same token), the others are short runs (two of ours for one of theirs, or the reverse). A
segment's log-prob on the server's side is the log-prob of its text there; our tokens in the
segment share it equally, so a step's total log-prob (the sum over its tokens) is the server's
total for the step's text, whatever the tokenization.

Only the spans where the two id lists differ are decoded (a few tokens each), so aligning a long
history costs one comparison per token."""
from __future__ import annotations

from typing import Callable, Sequence

Decode = Callable[[Sequence[int]], str]
Segment = tuple[int, int, int, int]  # ours[a:b] spells the same text as theirs[c:d]


def _length(decode: Decode, ids: Sequence[int], start: int, end: int) -> tuple[int, bool]:
    """Characters of ids[start:end] in context (decoded after the token before `start`, so that a
    tokenizer's leading-space rule applies as in the whole text), and whether the text ends on a
    whole character (a token may hold part of a multi-byte character)."""
    anchor = max(start - 1, 0)
    head = len(decode(ids[anchor:start])) if anchor < start else 0
    text = decode(ids[anchor:end])
    return len(text) - head, not text.endswith("\ufffd")


def segments(decode: Decode, ours: Sequence[int], theirs: Sequence[int]) -> list[Segment]:
    """Cut two tokenizations of one text into segments whose boundaries coincide (see the module
    doc); the last segment takes whatever remains of both."""
    out: list[Segment] = []
    i = j = 0
    while i < len(ours) and j < len(theirs):
        if ours[i] == theirs[j]:  # in step and the same token: the same span
            out.append((i, i + 1, j, j + 1))
            i, j = i + 1, j + 1
            continue
        a = b = 1
        while True:
            mine, mine_whole = _length(decode, ours, i, i + a)
            other, other_whole = _length(decode, theirs, j, j + b)
            if mine == other and mine_whole and other_whole:
                break
            if (mine <= other or j + b >= len(theirs)) and i + a < len(ours):
                a += 1
            elif j + b < len(theirs):
                b += 1
            else:
                break  # both used up: the rest is one segment
        out.append((i, i + a, j, j + b))
        i, j = i + a, j + b
    if i < len(ours) or j < len(theirs):
        if out and (i == len(ours) or j == len(theirs)):  # a tail on one side only joins the last segment
            a, _, c, _ = out.pop()
            out.append((a, len(ours), c, len(theirs)))
        else:
            out.append((i, len(ours), j, len(theirs)))
    return out


def carry_logprobs(cuts: list[Segment], filed: dict[int, float], first: int) -> dict[int, float]:
    """{our position: log-prob} from the server's {its position: log-prob}, for the segments that
    hold one of our positions >= first and whose every server position has a value."""
    carried: dict[int, float] = {}
    for a, b, c, d in cuts:
        if b <= first:
            continue
        values = [filed.get(k) for k in range(c, d)]
        if any(v is None for v in values) or a == b:
            continue
        share = sum(values) / (b - a)
        for position in range(a, b):
            carried[position] = share
    return carried


def server_position(cuts: list[Segment], position: int) -> int:
    """The server's first position in the segment holding our `position`."""
    for a, b, c, _ in cuts:
        if a <= position < b:
            return c
    return cuts[-1][3] if cuts else 0


# ---------------------------------------------------------------------- generations named by text
def offset_segments(ours: list, theirs: list[int]) -> list[Segment]:
    """Segments of two tokenizations given where each token starts in the text (ours[k] None: not
    on a character boundary); a token joins the segment its start falls in."""
    common = sorted({s for s in ours if s is not None} & set(theirs))

    def groups(starts: list) -> list[int]:
        """The index in `common` of the segment each token belongs to."""
        out, current = [], 0
        for start in starts:
            while start is not None and current + 1 < len(common) and common[current + 1] <= start:
                current += 1
            out.append(current)
        return out

    mine, other = groups(ours), groups(theirs)
    cuts = []
    for g in range(len(common)):
        a, c = mine.index(g) if g in mine else None, other.index(g) if g in other else None
        if a is not None and c is not None:
            cuts.append((a, a + mine.count(g), c, c + other.count(g)))
    return cuts


def generated_text(text: str, pieces: list[str], offsets: list[int]) -> str:
    """The text of every generated token: the server's text, with the last token's piece where
    the server cut its text at a stop string inside or before that token."""
    if not pieces:
        return text
    last = offsets[-1] - offsets[0]
    return text[:last] + pieces[-1] if len(text) < last + len(pieces[-1]) else text


def ids_from_text(tokenizer, text: str, offsets: list[int], values) -> tuple[list[int], object]:
    """Our tokens of a generation the server named by lossy text pieces (a multi-byte character
    split between tokens has no piece): the text encoded, the log-probs carried over by span."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if values is None:
        return ids, None
    starts = []
    for k in range(len(ids)):
        head = tokenizer.decode(ids[:k], skip_special_tokens=False)
        starts.append(None if head.endswith("\ufffd") else len(head))
    cuts = offset_segments(starts, [o - offsets[0] for o in offsets])
    carried = carry_logprobs(cuts, dict(enumerate(values)), 0)
    if len(carried) != len(ids):
        return ids, None
    return ids, [carried[k] for k in range(len(ids))]
