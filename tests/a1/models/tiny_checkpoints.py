"""Tiny random transformers checkpoints (Llama / Qwen2 variants) with a byte-level BPE tokenizer
and a ChatML template, saved as HF directories the loaders read."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOKENIZER_VOCAB = 300
CORPUS = [
    "the quick brown fox jumps over the lazy dog. what is two plus three? it is five.",
    "a language model predicts the next token; attention reads the cache of keys and values.",
    "Solve for x: 2x + 3 = 7, so x = 2. The answer is \\boxed{2}.",
] * 4

BASE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=320, max_position_embeddings=128,
            rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=0, pad_token_id=None)

# name -> (model_type, extra config)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", dict(tie_word_embeddings=False)),
    "llama_tied_llama3": ("llama", dict(tie_word_embeddings=True, rope_theta=500000.0, rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=64))),
    "llama_linear_bias": ("llama", dict(attention_bias=True, mlp_bias=True,
                                        rope_scaling=dict(rope_type="linear", factor=2.0))),
    "llama_dynamic": ("llama", dict(max_position_embeddings=16, rope_scaling=dict(rope_type="dynamic", factor=2.0))),
    "qwen2": ("qwen2", dict(tie_word_embeddings=False, num_key_value_heads=1)),
    "qwen2_tied": ("qwen2", dict(tie_word_embeddings=True, rope_theta=1000000.0)),
}


def train_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: Path, chat_template: str | None = CHAT_TEMPLATE) -> None:
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
              "eos_token": {"__type": "AddedToken", "content": "<|im_end|>", "special": True}, "model_max_length": 128}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def build_hf_model(model_type: str, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """A random transformers model; every weight (norms and biases too) random so misloads show."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    config_class, model_class = classes[model_type]
    config = config_class(**{**BASE, **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
            else:
                param.copy_(0.15 * torch.randn_like(param))
    return model


def save_checkpoint(model: torch.nn.Module, tokenizer: Tokenizer, directory: Path, **save_kwargs: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), **save_kwargs)
    save_tokenizer(tokenizer, directory)
    return directory
