"""`a1 distill-draft`: bad flags exit 2 naming the flag (before any model loads); a finished
directory is not overwritten."""
from __future__ import annotations

import pytest

from a1.cli import main


@pytest.mark.parametrize("flags,flag", [
    (["--layers", "0"], "--layers"),
    (["--init", "middle"], "--init"),
    (["--datasets", "nope"], "--datasets"),
    (["--minutes", "0"], "--minutes"),
])
def test_bad_flags_name_the_flag(flags, flag, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["distill-draft", "--out", str(tmp_path / "d"), *flags])
    assert exit_.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_a_finished_directory_is_left_alone(tmp_path, capsys) -> None:
    (tmp_path / "a1_draft.json").write_text("{}")
    assert main(["distill-draft", "--out", str(tmp_path)]) == 0
    assert "already holds a distilled draft" in capsys.readouterr().out


def test_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["distill-draft", "--help"])
    out = capsys.readouterr().out
    for flag in ("--target", "--layers", "--init", "--out", "--minutes", "--datasets", "--threads", "--keep-work"):
        assert flag in out



def test_measure_needs_a_draft(tmp_path, capsys) -> None:
    assert main(["distill-draft", "--out", str(tmp_path), "--measure"]) == 1
    assert "holds no distilled draft" in capsys.readouterr().err
