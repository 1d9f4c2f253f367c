"""`a1 serve` as a program: it loads the model, prints where it listens (port 0 picks a free one),
answers, and exits 0 on SIGTERM; a model that cannot load or a port that is taken exit 2 with a
message."""
from __future__ import annotations

import subprocess
import sys

import pytest

from a1.serve import main
from serve_helpers import ServerProcess, get, post, write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(write_tiny_checkpoint(tmp_path_factory.mktemp("cli") / "tiny", seed=3))


def test_a_model_that_cannot_load_exits_2(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "missing")]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--port", "70000"]) == 2
    assert "port must be" in capsys.readouterr().err


def test_serves_until_sigterm_and_refuses_a_taken_port(checkpoint):
    with ServerProcess("--model", checkpoint, "--max-model-len", "64") as server:
        status, health = get(server.url + "/health")
        assert status == 200 and health["status"] == "ok" and health["max_model_len"] == 64
        status, body = post(server.url + "/v1/completions", {"prompt": "the quick", "max_tokens": 4})
        assert status == 200 and body["usage"]["completion_tokens"] <= 4
        port = server.url.rsplit(":", 1)[1]
        taken = subprocess.run([sys.executable, "-m", "a1.serve", "--model", checkpoint, "--port", port],
                               capture_output=True, text=True, timeout=120)
        assert taken.returncode == 2 and "cannot listen on 127.0.0.1" in taken.stderr
        assert server.stop() == 0
