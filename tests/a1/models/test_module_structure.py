"""The model package imports in one direction: attention_metadata <- layers <- base (no cycle)."""
import ast
from pathlib import Path

import a1.models

MODELS = Path(a1.models.__file__).parent


def local_imports(name: str) -> set[str]:
    """The a1.models modules that module `name` imports, TYPE_CHECKING blocks included."""
    tree = ast.parse((MODELS / f"{name}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found.add(node.module or "")
            elif (node.module or "").startswith("a1.models."):
                found.add(node.module.split(".")[2])
    return found


def test_layers_and_metadata_do_not_import_the_model():
    assert "base" not in local_imports("layers")  # was: from .base import AttentionMetadata
    assert local_imports("attention_metadata") == set()
    assert {"attention_metadata", "layers"} <= local_imports("base")


def test_attention_metadata_is_one_class_everywhere():
    from a1.engine import model_runner
    from a1.models import base
    from a1.models.attention_metadata import AttentionMetadata

    assert a1.models.AttentionMetadata is base.AttentionMetadata is model_runner.AttentionMetadata is AttentionMetadata
