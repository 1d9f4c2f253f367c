"""The OpenAI-compatible /v1/completions with token-id prompts, in two dialects found by the first
scoring answer (the probe's): "prompt_logprobs" (vLLM, a1 serve: `prompt_logprobs` keyed by token
id, generated ids in `token_ids`) and "echo" (llama-cpp-python: `echo` + `logprobs` naming tokens
by text; log-probs found counting back from the end, generated ids mapped from their text).

A server that refuses token-id prompts (llama-cpp-python's server accepts strings only) gets the
history as text (special tokens written out, which llama.cpp parses back) and computes on its own
tokenization of that text, which we predict with the same tokenizer (the echoed token texts are
checked against the prediction). Where it differs from our ids (a model may write "\n" "\n" where
the tokenizer writes "\n\n"), its log-probs are carried onto our tokens by text span
(text_spans.py): a step's total log-prob is the server's for the step's text."""
from __future__ import annotations

from typing import Any, Optional

from a1.engine.sampling_params import SamplingParams

from .errors import RemoteAlignmentError, RemoteHTTPError, RemoteProtocolError
from .pieces import PieceMap
from .protocol import Generation, Protocol, check_ids, check_logprob
from .text_spans import carry_logprobs, generated_text, ids_from_text, segments, server_position

DIALECTS = ("prompt_logprobs", "echo")


class OpenAIProtocol(Protocol):
    name = "openai"
    generate_path = score_path = "/v1/completions"

    def __init__(self, where: str, model: Optional[str], tokenizer, vocab_size: int,
                 dialect: Optional[str] = None) -> None:
        super().__init__(where, model)
        if dialect not in (None,) + DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS} or None (found by the first score), got {dialect!r}")
        self.dialect, self.vocab_size, self.tokenizer = dialect, vocab_size, tokenizer
        self.pieces = PieceMap(tokenizer)
        self.text_prompts = False

    def accepts_token_ids(self, transport, url: str) -> bool:
        """Ask the server for one token after a token-id prompt; a refusal that names the prompt
        switches to text prompts (see the module doc)."""
        payload = self._base(self.tokenizer.encode("The", add_special_tokens=False))
        payload.update(max_tokens=1, temperature=0.0)
        try:
            transport.call("POST", url + self.generate_path, payload, "gen")
        except RemoteHTTPError as err:
            if "prompt" in str(err) and (err.status >= 500 or err.status in (400, 422)):
                self.text_prompts = True
                return False
            raise
        return True

    def find_dialect(self, transport, url: str) -> str:
        """Score a few tokens once and see which log-probs the server answers (sets dialect)."""
        if self.dialect is None:
            ids = self.tokenizer.encode("The capital of France is Paris.", add_special_tokens=False)
            reply = transport.call("POST", url + self.score_path, self.score_request(ids, len(ids) - 2), "score")
            self.dialect = self.detect_dialect(reply.body)
        return self.dialect

    def _prompt(self, prompt_ids: list[int]):
        return self._text(prompt_ids) if self.text_prompts else list(prompt_ids)

    def _text(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=False)

    def _base(self, prompt_ids: list[int]) -> dict:
        payload: dict = {"prompt": self._prompt(prompt_ids)}
        if self.model is not None:
            payload["model"] = self.model
        return payload

    # ------------------------------------------------------------------ generation
    def generate_request(self, prompt_ids: list[int], params: SamplingParams) -> dict:
        echo = self.dialect == "echo"
        payload = self._base(prompt_ids)
        payload.update(
            max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
            # vLLM and SGLang disable top-k with -1; llama.cpp with 0 (and refuses -1)
            top_k=params.top_k if params.top_k > 0 else (0 if echo else -1),
            stop=list(params.stop), include_stop_str_in_output=True, min_tokens=params.min_tokens,
            stop_token_ids=list(params.stop_token_ids), ignore_eos=params.ignore_eos,
            skip_special_tokens=params.skip_special_tokens, return_token_ids=True,
            # vLLM >= 0.8 (--generation-config auto) fills a field the request leaves out from the model's
            # generation_config.json (Qwen2.5: repetition_penalty 1.05): the embedded engine's neutral values
            repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, min_p=0.0,
        )
        if self.seed(params.seed) is not None:
            payload["seed"] = self.seed(params.seed)
        # the generated ids come in choices[0].token_ids (vLLM >= 0.10.2, a1 serve), else in the
        # log-probs as "token_id:N" (older vLLM) or as text (llama.cpp): always ask for them
        payload.update(logprobs=1, return_tokens_as_token_ids=True)
        if echo:  # llama.cpp's own name of the repetition penalty (1.1 unless told otherwise)
            payload.update(repeat_penalty=1.0)
        return payload

    def parse_generation(self, body: Any, params: SamplingParams) -> Generation:
        choice = self.field(body, "choices", 0)
        if not isinstance(choice, dict):
            raise RemoteProtocolError(f"{self.where}: choices[0] is not an object: {choice!r}"[:300])
        logprobs = choice.get("logprobs")
        ids = choice.get("token_ids")
        if ids is None:
            tokens = logprobs.get("tokens") if isinstance(logprobs, dict) else None
            if tokens is None:
                raise RemoteProtocolError(
                    f"{self.where}: the completion carries no token ids (neither choices[0].token_ids, which vLLM "
                    f"returns for return_token_ids, nor logprobs.tokens)"
                )
            if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
                ids = [int(t[len("token_id:"):]) for t in tokens]
            else:
                completion = self.field(body, "usage", "completion_tokens")
                if completion != len(tokens):
                    raise RemoteProtocolError(
                        f"{self.where}: the server generated {completion} tokens but named {len(tokens)} of them"
                    )
                ids, logprobs = self._ids_from_pieces(choice, tokens, params)
        ids = check_ids(self.where, ids, self.vocab_size, "choices[0].token_ids")
        values = None
        if params.logprobs:
            raw = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
            if not isinstance(raw, list) or len(raw) != len(ids):
                count = len(raw) if isinstance(raw, list) else 0
                raise RemoteProtocolError(f"{self.where}: {count} generated log-probs for {len(ids)} generated tokens")
            values = [check_logprob(self.where, v, f"generated log-prob {i}") for i, v in enumerate(raw)]
        finish = choice.get("finish_reason")
        if finish not in ("stop", "length"):  # vLLM: "abort" (the engine dropped it), "error"
            raise RemoteProtocolError(f"{self.where}: the generation ended with finish_reason {finish!r}, not a "
                                      f"stop or a length limit")
        return Generation(ids, values, finish, choice.get("stop_reason"))

    def _ids_from_pieces(self, choice: dict, pieces: list, params: SamplingParams) -> tuple[list[int], Any]:
        """Ids of the tokens a server named by text (llama.cpp): each piece's one id, where the
        pieces map and spell the server's text; else (a multi-byte character split between tokens
        leaves pieces without its bytes) the text encoded, with the log-probs carried over by span."""
        logprobs = choice.get("logprobs")
        offsets, text = logprobs.get("text_offset"), choice.get("text")
        if not (isinstance(offsets, list) and len(offsets) == len(pieces) and isinstance(text, str)
                and all(isinstance(o, int) for o in offsets) and all(isinstance(p, str) for p in pieces)
                and all(a <= b for a, b in zip(offsets, offsets[1:]))
                and (not offsets or offsets[-1] - offsets[0] <= len(text))):
            return self.pieces.ids(pieces, self.where), logprobs  # nothing to check the pieces against
        spelled = generated_text(text, pieces, offsets)
        try:
            ids = self.pieces.ids(pieces, self.where)
            if self.tokenizer.decode(ids, skip_special_tokens=False) == spelled:
                return ids, logprobs
        except RemoteProtocolError:
            pass
        values = logprobs.get("token_logprobs") if params.logprobs else None
        if values is not None and (not isinstance(values, list) or len(values) != len(pieces)):
            raise RemoteProtocolError(f"{self.where}: {_count(values)} generated log-probs for {len(pieces)} tokens")
        ids, carried = ids_from_text(self.tokenizer, spelled, offsets, values)
        if values is not None and carried is None:
            raise RemoteProtocolError(f"{self.where}: the generated log-probs cannot be carried onto the tokens of "
                                      f"{spelled!r}")
        return ids, {**logprobs, "token_logprobs": carried}

    # ------------------------------------------------------------------ scoring
    def score_request(self, token_ids: list[int], start: int) -> dict:
        payload = self._base(token_ids)
        # one greedy token is generated (llama.cpp reads max_tokens 0 as "no limit")
        payload.update(max_tokens=1, temperature=0.0)
        if self.dialect != "echo":
            payload["prompt_logprobs"] = 0
        if self.dialect != "prompt_logprobs":
            payload.update(echo=True, logprobs=1)
        return payload

    def detect_dialect(self, body: Any) -> str:
        choice = self.field(body, "choices", 0)
        if isinstance(choice, dict) and choice.get("prompt_logprobs") is not None:
            return "prompt_logprobs"
        if isinstance(choice, dict) and isinstance(choice.get("logprobs"), dict):
            return "echo"
        raise RemoteProtocolError(
            f"{self.where}: the server returns no prompt log-probs (neither prompt_logprobs nor echo + logprobs)"
        )

    def position_logprobs(self, body: Any, token_ids: list[int], start: int) -> dict[int, float]:
        dialect = self.dialect or self.detect_dialect(body)
        if dialect == "prompt_logprobs":
            return self._prompt_logprobs(body, token_ids, start)
        if not self.text_prompts:
            return self._echo_logprobs(body, token_ids, start)
        # the server scored its own tokenization of the text: file by its positions, carry back
        theirs = self.tokenizer.encode(self._text(token_ids), add_special_tokens=False)
        cuts = segments(self._text, token_ids, theirs)
        filed = self._echo_logprobs(body, theirs, server_position(cuts, start))
        carried = carry_logprobs(cuts, filed, max(start - 1, 1))
        if len(theirs) in filed:  # the token after the prompt (the probe's shift test reads it)
            carried[len(token_ids)] = filed[len(theirs)]
        return carried

    def _prompt_logprobs(self, body: Any, token_ids: list[int], start: int) -> dict[int, float]:
        entries = self.field(body, "choices", 0, "prompt_logprobs")
        if not isinstance(entries, list) or len(entries) != len(token_ids):
            count = len(entries) if isinstance(entries, list) else 0
            raise RemoteProtocolError(f"{self.where}: {count} prompt log-probs for a {len(token_ids)}-token prompt")
        filed = {}
        for position in range(max(start - 1, 1), len(token_ids)):
            entry, key = entries[position], str(token_ids[position])
            if not isinstance(entry, dict) or key not in entry:
                raise RemoteAlignmentError(
                    f"{self.where}: prompt log-prob entry {position} does not hold token {key} "
                    f"(it holds {list(entry)[:4] if isinstance(entry, dict) else entry!r}): misaligned with the prompt"
                )
            value = entry[key]
            filed[position] = check_logprob(self.where, value.get("logprob") if isinstance(value, dict) else value,
                                            f"prompt log-prob {position}")
        return filed

    def _echo_logprobs(self, body: Any, token_ids: list[int], start: int) -> dict[int, float]:
        """Entries are counted back from the prompt's end: the echoed list may omit a leading BOS
        (llama-cpp-python also skips every BOS-id token), and it ends with the generated tokens
        (OpenAI, a1 serve) or without them (llama-cpp-python has no log-prob row for them)."""
        logprobs = self.field(body, "choices", 0, "logprobs")
        values, tokens = self.field(logprobs, "token_logprobs"), logprobs.get("tokens")
        completion = self.field(body, "usage", "completion_tokens")
        if not isinstance(values, list) or not isinstance(completion, int) or not 0 <= completion <= len(values):
            raise RemoteProtocolError(f"{self.where}: malformed echo log-probs ({_count(values)} values, "
                                      f"{completion!r} generated tokens)")
        end = self._prompt_end(tokens, token_ids, len(values), completion)  # entries [0, end): the prompt's
        # one position on either side of the scored ones too, for the probe's shift test
        filed: dict[int, float] = {}
        for position in range(max(start - 1, 1), len(token_ids) + 1):
            index = end - (len(token_ids) - position)
            if not 0 <= index < len(values) or values[index] is None:
                continue
            filed[position] = check_logprob(self.where, values[index], f"echoed log-prob {index}")
        self._check_pieces(tokens, token_ids, end, start)
        return filed

    def _prompt_end(self, tokens: Any, token_ids: list[int], count: int, completion: int) -> int:
        """Where the prompt's entries end: after `completion` generated entries are taken off, or
        fewer where the echoed token texts say so."""
        if not isinstance(tokens, list) or len(tokens) != count:
            return count - completion
        for generated in range(completion, -1, -1):
            end, compared = count - generated, 0
            for back in range(1, min(4, len(token_ids), end) + 1):
                ours = self.pieces.piece(token_ids[-back])
                if "\ufffd" in ours or not tokens[end - back]:
                    continue
                if tokens[end - back] != ours:
                    break
                compared += 1
            else:
                if compared:
                    return end
        return count - completion

    def _check_pieces(self, tokens: Any, token_ids: list[int], end: int, start: int) -> None:
        """The echoed token texts must be ours at the scored positions (a misaligned list is not)."""
        if not isinstance(tokens, list):
            return
        compared = mismatched = 0
        for position in range(start, len(token_ids)):
            index = end - (len(token_ids) - position)
            if not 0 <= index < len(tokens):
                continue
            ours = self.pieces.piece(token_ids[position])
            if "\ufffd" in ours or not tokens[index]:
                continue  # part of a multi-byte character, or a control token: not comparable
            compared += 1
            mismatched += tokens[index] != ours
        if compared and mismatched * 2 >= compared:
            raise RemoteAlignmentError(
                f"{self.where}: {mismatched} of {compared} echoed token texts differ from the scored tokens: "
                f"the echoed log-probs are not aligned with the prompt"
            )


def _count(values: Any) -> int:
    return len(values) if isinstance(values, list) else 0
