"""llama.cpp (llama-cpp-python's low-level API) as benchmarks/bench_quantized.py drives it: one model
and context, B sequences decoded together (one llama_decode of B tokens per step; the KV cache split
over the sequences, llama.cpp's default kv_unified=false; greedy), and the prefill of one long
prompt. Token ids come from a1's tokenizer (the same GGUF vocabulary), so both engines compute on
identical inputs."""
from __future__ import annotations

import ctypes
import time
from typing import Sequence

import numpy as np


class LlamaCpp:
    def __init__(self, path: str, threads: int, n_ctx: int, n_seq_max: int, n_batch: int = 2048) -> None:
        import llama_cpp

        self.lib = llama_cpp
        llama_cpp.llama_backend_init()
        self._quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)  # kept alive: C holds it
        llama_cpp.llama_log_set(self._quiet, ctypes.c_void_p(0))
        model_params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, n_batch
        params.n_seq_max, params.n_threads, params.n_threads_batch = n_seq_max, threads, threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.vocab = llama_cpp.llama_n_vocab(llama_cpp.llama_model_get_vocab(self.model))
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, n_seq_max)

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)
        self.lib.llama_model_free(self.model)

    def clear(self) -> None:
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)

    def _decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> None:
        """rows: (token, position, sequence, wants logits)."""
        b = self.batch
        b.n_tokens = len(rows)
        for i, (token, pos, seq, logits) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        if self.lib.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def logits(self, index: int) -> np.ndarray:
        return np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, index), shape=(self.vocab,))

    def logprobs(self, prompt: Sequence[int]) -> np.ndarray:
        """float32 [len(prompt), V] log-probs of the next token after every prompt position."""
        self.clear()
        out = []
        for start in range(0, len(prompt), self.batch_size):
            piece = prompt[start : start + self.batch_size]
            self._decode([(t, start + i, 0, True) for i, t in enumerate(piece)])
            out += [self.logits(i).astype(np.float64) for i in range(len(piece))]
        logits = np.stack(out)
        return (logits - logits.max(1, keepdims=True) - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                keepdims=True))).astype(np.float32)

    @property
    def batch_size(self) -> int:
        return self.lib.llama_n_batch(self.ctx)

    def generate(self, prompt: Sequence[int], batch: int, new_tokens: int) -> dict:
        """`batch` copies of prompt, greedy, `new_tokens` each: wall time, decode time (first token
        to last), and sequence 0's tokens."""
        self.clear()
        start = time.perf_counter()
        tokens = []
        for seq in range(batch):  # each sequence's prompt in its own llama_decode, like separate requests
            self._decode([(t, i, seq, i == len(prompt) - 1) for i, t in enumerate(prompt)])
            tokens.append([int(np.argmax(self.logits(len(prompt) - 1)))])
        first = time.perf_counter()
        for step in range(1, new_tokens):
            pos = len(prompt) + step - 1
            self._decode([(tokens[s][-1], pos, s, True) for s in range(batch)])
            for s in range(batch):
                tokens[s].append(int(np.argmax(self.logits(s))))
        end = time.perf_counter()
        return {"wall_s": end - start, "decode_s": end - first, "tokens": tokens[0]}

    def prefill(self, prompt: Sequence[int]) -> float:
        """Seconds to prefill one prompt (in llama_decode calls of the context's batch size)."""
        self.clear()
        start = time.perf_counter()
        for begin in range(0, len(prompt), self.batch_size):
            piece = prompt[begin : begin + self.batch_size]
            self._decode([(t, begin + i, 0, begin + i == len(prompt) - 1) for i, t in enumerate(piece)])
        return time.perf_counter() - start
