"""The draft spec strings: `self:skip=A-B[,C-D...]` parsed in one place, refusals naming the argument."""
from __future__ import annotations

import pytest

from a1.models.draft_spec import (SkipSpec, draft_label, is_distilled_dir, is_skip_spec, load_draft,
                                  parse_skip_spec)


@pytest.mark.parametrize("text,ranges", [
    ("self:skip=15", ((15, 15),)),
    ("self:skip=14-16", ((14, 16),)),
    ("self:skip=20-21, 3-4", ((3, 4), (20, 21))),
    (" self:skip=0-0,2 ", ((0, 0), (2, 2))),
])
def test_parse(text, ranges) -> None:
    spec = parse_skip_spec(text)
    assert spec.ranges == ranges
    assert parse_skip_spec(str(spec)) == spec  # str() is the canonical spec


def test_kept_layers() -> None:
    assert parse_skip_spec("self:skip=1-2,5").kept_layers(7) == [0, 3, 4, 6]
    assert parse_skip_spec("self:skip=0").kept_layers(2) == [1]


@pytest.mark.parametrize("text,message", [
    ("self:skip=", "names no layers"),
    ("self:skip=a-b", "not a layer range"),
    ("self:skip=3-", "not a layer range"),
    ("self:skip=-1", "not a layer range"),
    ("self:skip=5-3", "reversed"),
    ("self:skip=2-5,4-6", "overlap"),
    ("self:skip=3,3", "overlap"),
    ("self:layers=3", "not a layer-skip spec"),
])
def test_malformed_specs_are_refused_naming_the_argument(text, message) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_skip_spec(text, name="--draft")
    assert str(err.value).startswith("--draft: ")


def test_range_and_emptiness_are_checked_against_the_target() -> None:
    with pytest.raises(ValueError, match=r"draft: skip range 28-30 is out of range: the target has layers 0-29"):
        parse_skip_spec("self:skip=28-30").kept_layers(30)
    with pytest.raises(ValueError, match="skips all 4 layers"):
        parse_skip_spec("self:skip=0-1,2-3").kept_layers(4)


def test_kinds(tmp_path) -> None:
    assert is_skip_spec("self:skip=1") and not is_skip_spec("self") and not is_skip_spec(None)
    assert not is_distilled_dir(tmp_path) and not is_distilled_dir("self:skip=1")
    (tmp_path / "a1_draft.json").write_text("{}")
    assert is_distilled_dir(tmp_path) and is_distilled_dir(str(tmp_path))
    assert load_draft("self", object()) is None and load_draft("some/model.gguf", object()) is None
    assert draft_label("self:skip=14-16,20") == "skip14-16_20" and draft_label(None) == "self"
    assert draft_label(str(tmp_path)) == tmp_path.name
    assert isinstance(parse_skip_spec("self:skip=1"), SkipSpec)
