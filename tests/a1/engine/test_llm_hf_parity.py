"""LLM over the real loader on a tiny random transformers Llama: greedy generation and scoring
equal transformers' generate and forward on the same weights."""
import json

import pytest
import torch

from a1 import LLM, SamplingParams

CORPUS = ["the quick brown fox jumps over the lazy dog. what is two plus three? it is five."] * 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}))
    config = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, vocab_size=320, max_position_embeddings=128,
                         rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.15 * torch.randn_like(param))  # random everywhere, so a misload shows
    model.save_pretrained(str(directory))
    return model, directory


@torch.no_grad()
def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    """transformers generate(do_sample=False) with EOS disabled, so it runs n tokens."""
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0,
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    return out[0, len(prompt):].tolist()


def test_generate_and_score_match_transformers(checkpoint):
    hf_model, directory = checkpoint
    llm = LLM(str(directory), block_size=4, kv_cache_gb=0.01, max_num_batched_tokens=16)
    prompts = ["the quick brown fox", "what is two plus three? it is", "lazy dog. the quick brown fox jumps over"]
    outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True))
    for out in outs:
        assert out.token_ids == hf_greedy(hf_model, out.prompt_token_ids, 12)
        assert out.text == llm.tokenizer.decode(out.token_ids, skip_special_tokens=True)
    prompt, cont = outs[0].prompt_token_ids, outs[1].token_ids[:6]
    with torch.no_grad():
        logprobs = torch.log_softmax(hf_model(torch.tensor([prompt + cont])).logits[0].float(), -1)
    expected = [float(logprobs[len(prompt) - 1 + i, t]) for i, t in enumerate(cont)]
    assert llm.score(prompt, cont).token_logprobs == pytest.approx(expected, abs=1e-4)
