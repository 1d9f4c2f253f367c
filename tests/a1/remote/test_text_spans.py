"""Carrying a text-tokenizing server's log-probs back onto our tokens: segments of two
tokenizations of one text end where both have a token boundary, a segment's log-prob is shared
equally by our tokens in it, and partial characters never end a segment."""
from __future__ import annotations

import pytest

from a1.remote.text_spans import carry_logprobs, segments, server_position

# a toy vocabulary: 5 and 6 are the two bytes of "é" (each alone decodes to the replacement character)
PIECES = {0: "a", 1: "b", 2: "ab", 3: "\n", 4: "\n\n", 7: "é", 8: "c"}


def decode(ids) -> str:
    text, i, ids = "", 0, list(ids)
    while i < len(ids):
        if ids[i] == 5 and i + 1 < len(ids) and ids[i + 1] == 6:
            text, i = text + "é", i + 2
        elif ids[i] in (5, 6):
            text, i = text + "\ufffd", i + 1
        else:
            text, i = text + PIECES[ids[i]], i + 1
    return text


@pytest.mark.parametrize("ours, theirs, expected", [
    ([0, 1, 8], [0, 1, 8], [(0, 1, 0, 1), (1, 2, 1, 2), (2, 3, 2, 3)]),
    ([0, 1, 8], [2, 8], [(0, 2, 0, 1), (2, 3, 1, 2)]),
    ([8, 3, 3, 0], [8, 4, 0], [(0, 1, 0, 1), (1, 3, 1, 2), (3, 4, 2, 3)]),
    ([8, 4, 3, 0], [8, 3, 4, 0], [(0, 1, 0, 1), (1, 3, 1, 3), (3, 4, 3, 4)]),
    ([0, 5, 6, 8], [0, 7, 8], [(0, 1, 0, 1), (1, 3, 1, 2), (3, 4, 2, 3)]),
    ([2, 5, 6], [0, 1, 7], [(0, 1, 0, 2), (1, 3, 2, 3)]),
])
def test_segments_end_where_both_tokenizations_have_a_boundary(ours, theirs, expected):
    assert decode(ours) == decode(theirs)
    assert segments(decode, ours, theirs) == expected


def test_a_partial_character_never_ends_a_segment():
    # ours "a" + byte 5, then byte 6 + "b"; theirs "a" "é" "b": the cut between 5 and 6 is no boundary
    cuts = segments(decode, [0, 5, 6, 1], [0, 7, 1])
    assert cuts == [(0, 1, 0, 1), (1, 3, 1, 2), (3, 4, 2, 3)]


def test_log_probs_are_copied_summed_or_shared_and_keep_the_step_total():
    ours, theirs = [8, 4, 0, 1], [8, 3, 3, 2]  # "c" "\n\n" "a" "b" vs "c" "\n" "\n" "ab"
    cuts = segments(decode, ours, theirs)
    filed = {1: -1.0, 2: -0.5, 3: -3.0}
    carried = carry_logprobs(cuts, filed, 1)
    assert carried == {1: -1.5, 2: -1.5, 3: -1.5}
    assert sum(carried.values()) == sum(filed.values())
    assert server_position(cuts, 2) == 3 and server_position(cuts, 1) == 1


def test_a_segment_missing_a_server_value_is_left_out():
    cuts = segments(decode, [8, 4, 0], [8, 3, 3, 0])
    assert carry_logprobs(cuts, {1: -1.0, 3: -2.0}, 1) == {2: -2.0}  # position 2 of theirs has no value
    assert carry_logprobs(cuts, {0: -9.0, 1: -1.0, 2: -1.0, 3: -2.0}, 2) == {2: -2.0}  # before `first`: skipped


class ToyTokenizer:
    """Greedy longest match over PIECES (5 and 6, the bytes of "é", are never produced)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        by_text = sorted(((t, i) for i, t in PIECES.items()), key=lambda item: -len(item[0]))
        ids = []
        while text:
            piece, token = next((t, i) for t, i in by_text if text.startswith(t))
            ids.append(token)
            text = text[len(piece):]
        return ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return decode(ids)


def test_offset_segments_put_a_token_without_its_own_start_in_the_segment_it_starts_in():
    # ours "c" "é" "b" start at 0 1 2; the server's "c"+byte, byte+"b" were reported at 0, 1 (its
    # offsets drop partial bytes): the boundary 1 is common, 2 is ours only
    from a1.remote.text_spans import offset_segments

    assert offset_segments([0, 1, 2], [0, 1]) == [(0, 1, 0, 1), (1, 3, 1, 2)]
    assert offset_segments([0, None, 2], [0, 2, 2]) == [(0, 2, 0, 1), (2, 3, 1, 3)]


def test_a_generation_named_by_lossy_pieces_is_encoded_from_its_text():
    from a1.remote.text_spans import generated_text, ids_from_text

    # the server wrote "cé" + "\n\n" as "c"+byte, byte, "\n\n", and cut its text at the stop "\n\n"
    pieces, offsets = ["c", "", "\n\n"], [40, 41, 42]
    text = generated_text("cé", pieces, offsets)
    assert text == "cé\n\n"
    ids, values = ids_from_text(ToyTokenizer(), text, offsets, [-1.0, -2.0, -0.5])
    assert ids == [8, 7, 4] and decode(ids) == text
    assert values == [-1.0, -2.0, -0.5]
    assert generated_text("ab", ["a", "b"], [7, 8]) == "ab"  # nothing cut: the server's text as is
    assert ids_from_text(ToyTokenizer(), "ab", [7, 8], None) == ([2], None)
    assert ids_from_text(ToyTokenizer(), "ab", [7, 8], [-1.0, -3.0])[1] == [-4.0]  # one token for two: the sum
