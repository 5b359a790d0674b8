"""What each kind of OpenAI-compatible server takes (remote.py): the dialect its request fields are written in
(engine/dialects/, read from the settings table), its logprobs limit and meaning, and its non-neutral defaults.

Every request carries the OpenAI fields (max_tokens, temperature, stop, seed, logprobs); the rest are the
kind's own sampler fields, written out in full (the servers' defaults are not neutral).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import SETTINGS as TABLE
from ..config import DecodingConfig
from ..dialects import LLAMACPP, OPENAI, VLLM, Dialect
from ..dialects import llamacpp as llamacpp_dialect
from ..dialects import openai as openai_dialect
from ..dialects import vllm as vllm_dialect
from ..grammars import choice_gbnf

COMMON = frozenset({"name", "description", "do_sample", "temperature", "max_new_tokens", "stop_strings", "seed"})
"""What every request carries under OpenAI's names."""
NOT_SENT = frozenset({"logprob_tokens", "logit_bias"})
"""Settings the client does not send to another stack's server: named tokens' logprobs would come back in a shape
it does not read, and logit_bias keys differ per tokenizer (text keys)."""


@dataclass(frozen=True)
class Kind:
    """One kind of server."""

    dialect: Dialect | None
    """The stack its request fields are spelled in (None: decodelab's own names)."""
    max_logprobs: int
    logprobs: str
    """What its logprobs mean."""
    only: frozenset[str] | None = None
    """The settings it takes, where it takes fewer than its dialect names."""
    borrowed: tuple[tuple[str, Dialect], ...] = ()
    """Settings it takes under another dialect's name (llama-cpp-python's min_tokens is vLLM's)."""
    usage: bool = False
    max_parallel: int | None = None
    defaults: dict = field(default_factory=dict)
    """Its own non-neutral defaults, which every request overrides (said in each completion's notes)."""
    caveat: dict = field(default_factory=dict)

    def sends(self) -> dict[str, tuple[str, Dialect | None]]:
        """decodelab setting -> (the request field, its dialect) for every sampler setting this kind applies."""
        out: dict[str, tuple[str, Dialect | None]] = {}
        for s in TABLE:
            if s.name in COMMON or s.name == "logprob_tokens" or (self.only is not None and s.name not in self.only):
                continue
            if s.name in NOT_SENT and self.dialect is not None:
                continue
            if self.dialect is None:
                out[s.name] = (s.name, None)
            elif theirs := self.dialect.name(s.name):
                out[s.name] = (theirs, self.dialect)
        for name, dialect in self.borrowed:
            borrowed = dialect.name(name)
            assert borrowed is not None  # a borrowed setting is named in the dialect it is borrowed from
            out[name] = (borrowed, dialect)
        return out

    @property
    def fields(self) -> frozenset[str]:
        """Every setting this kind applies (the common ones included)."""
        sends = set(self.sends())
        if "grammar" in sends:
            sends.add("choice")  # a choice travels as a GBNF grammar
        return frozenset(sends) | (COMMON - {"name", "description", "do_sample"})


KINDS: dict[str, Kind] = {
    "decodelab": Kind(None, 20, "raw model distribution (plus decodelab's processed values)", usage=True),
    "vllm": Kind(VLLM, 20, "raw model distribution (vLLM's default logprobs mode)", usage=True),
    "llamacpp": Kind(LLAMACPP, 10, "as llama.cpp's llama-server reports them (not checked here)",
                     defaults={"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_last_n": 64}),
    # one request at a time: by default it interrupts a running request for a new one
    "llama-cpp-python": Kind(LLAMACPP, 10, "raw model distribution (log-softmax of the logits)",
                             only=frozenset({"top_p", "top_k", "min_p", "repetition_penalty", "frequency_penalty",
                                             "presence_penalty", "grammar", "choice"}),
                             borrowed=(("min_new_tokens", VLLM),), max_parallel=1,
                             defaults={"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1},
                             caveat={"repetition_penalty": "only over the server's last_n_tokens_size window "
                                                           "(64 by default), not the whole context"}),
    "openai": Kind(OPENAI, 5, "as reported by the server", usage=True),
}
NEUTRAL = DecodingConfig()
SETTINGS = tuple(s.name for s in TABLE if s.name not in ("name", "description", "do_sample", "temperature",
                                                          "top_p", "max_new_tokens"))
"""Every setting a server may or may not apply (the ones every request carries aside)."""


def sampler_fields(kind: str, config: DecodingConfig) -> dict:
    """The kind's sampler fields for the config, in its own names and spellings (neutral values written out)."""
    from ..results import json_config

    k = KINDS[kind]
    own = json_config(config)  # decodelab's own server: -inf biases as "-inf"
    out = {}
    for name, (theirs, dialect) in k.sends().items():
        if name in ("json_schema", "regex", "choice", "grammar"):
            continue  # constraint_fields
        if name == "sampler_order":
            if dialect is not None or config.sampler_order:
                out[theirs] = dialect.order(config) if dialect is not None else list(config.sampler_order)
        elif dialect is None:
            if getattr(config, name) != getattr(NEUTRAL, name):
                out[theirs] = own[name]
        else:
            out[theirs] = dialect.value(config, name)
    return out


def constraint_fields(kind: str, config: DecodingConfig) -> dict:
    """The config's constraint in the server's own request field (a choice as GBNF where only grammars go)."""
    if kind == "vllm":
        return vllm_dialect.constraint_fields(config)
    if kind == "llamacpp":
        return llamacpp_dialect.constraint_fields(config)
    if kind == "openai":
        form = openai_dialect.response_format(config)
        return {"response_format": form} if form is not None else {}
    if kind == "llama-cpp-python" and (config.grammar or config.choice):
        return {"grammar": config.grammar or choice_gbnf(config.choice)}
    return {}
