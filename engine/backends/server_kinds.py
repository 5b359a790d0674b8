"""What each kind of OpenAI-compatible server takes (remote.py): its request fields, logprobs limit and meaning,
its renamed and non-neutral default fields, and how it spells a structured-output constraint."""

from __future__ import annotations

import json

from ..config import SETTINGS as TABLE
from ..config import DecodingConfig
from ..grammars import choice_gbnf

# What each kind of server accepts (request field names), its top_logprobs limit, and what its logprobs mean.
KINDS = {
    "decodelab": dict(fields={"temperature", "top_p", "top_k", "min_p", "typical_p", "repetition_penalty",
                              "frequency_penalty", "presence_penalty", "no_repeat_ngram_size", "num_beams",
                              "length_penalty", "seed", "stop_strings", "max_new_tokens", "min_new_tokens"},
                      max_logprobs=20, logprobs="raw model distribution (plus decodelab's processed values)",
                      usage=True),
    "vllm": dict(fields={"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "frequency_penalty",
                         "presence_penalty", "seed", "stop_strings", "max_new_tokens", "min_new_tokens"},
                 max_logprobs=20, logprobs="raw model distribution (vLLM's default logprobs mode)", usage=True),
    "llamacpp": dict(fields={"temperature", "top_p", "top_k", "min_p", "typical_p", "repetition_penalty",
                             "frequency_penalty", "presence_penalty", "seed", "stop_strings", "max_new_tokens"},
                     max_logprobs=10, logprobs="as llama.cpp's llama-server reports them (not checked here)",
                     rename={"repetition_penalty": "repeat_penalty"},
                     defaults={"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_last_n": 64}),
    "llama-cpp-python": dict(fields={"temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                                     "frequency_penalty", "presence_penalty", "seed", "stop_strings",
                                     "max_new_tokens", "min_new_tokens"},
                             max_logprobs=10, logprobs="raw model distribution (log-softmax of the logits)",
                             rename={"repetition_penalty": "repeat_penalty"},
                             defaults={"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1},
                             # one request at a time: by default it interrupts a running request for a new one
                             max_parallel=1,
                             caveat={"repetition_penalty": "only over the server's last_n_tokens_size window "
                                                           "(64 by default), not the whole context"}),
    "openai": dict(fields={"temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "stop_strings",
                           "max_new_tokens"}, max_logprobs=5, logprobs="as reported by the server", usage=True),
}
NEUTRAL = DecodingConfig()
SETTINGS = tuple(s.name for s in TABLE if s.name not in ("name", "description", "do_sample", "temperature",
                                                          "top_p", "max_new_tokens"))
"""Every setting a server may or may not apply (the ones every request carries aside)."""
PASSED_THROUGH = frozenset(SETTINGS) - {"logprob_tokens"}
"""What decodelab's own server takes, under decodelab's names (server/dialects.py): everything but named tokens."""
KINDS["decodelab"]["fields"] |= PASSED_THROUGH



CONSTRAINTS = {
    "vllm": {"json_schema": "guided_json", "regex": "guided_regex", "choice": "guided_choice",
             "grammar": "guided_grammar"},
    "llamacpp": {"json_schema": "json_schema", "grammar": "grammar", "choice": "grammar"},
    "llama-cpp-python": {"grammar": "grammar", "choice": "grammar"},
    "openai": {"json_schema": "response_format"},
}
"""Each server kind's request field for a constraint setting (decodelab's own server takes them all by name)."""
for _kind, _names in CONSTRAINTS.items():
    KINDS[_kind]["fields"] |= set(_names)


def constraint_fields(kind: str, config: DecodingConfig) -> dict:
    """The config's constraint in the server's own request field (a choice as GBNF where only grammars go)."""
    names = CONSTRAINTS.get(kind, {})
    for name, field in names.items():
        value = getattr(config, name)
        if value in ("", ()):
            continue
        if name == "json_schema":
            schema = json.loads(value)
            return {field: {"type": "json_schema", "json_schema": {"name": "decodelab", "schema": schema,
                                                                    "strict": True}}
                    if field == "response_format" else schema}
        if name == "choice" and field == "grammar":
            return {field: choice_gbnf(value)}
        return {field: list(value) if name == "choice" else value}
    return {}
