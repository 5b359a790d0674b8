"""DecodingConfig: the single, validated description of one decoding setup."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

SEED_MAX = 2**63 - 1  # TOML integers are signed 64-bit


class ConfigError(ValueError):
    """A decoding setting (or a preset holding one) is invalid; the message says what to change."""


# One line of help per field, for the TUI form, the CLI and error messages (from PARAMETERS.md).
FIELD_HELP: dict[str, str] = {
    "name": "a short name for this config (shown as the pane title)",
    "description": "free text: what this config is for",
    "do_sample": "false: always take the most likely token (greedy); true: draw from the distribution",
    "temperature": "divides the logits: below 1 sharpens, above 1 flattens; 0 = greedy",
    "top_k": "keep only the k most likely tokens; 0 = off",
    "top_p": "keep the smallest set of likeliest tokens whose probabilities add up to p; 1 = off",
    "min_p": "drop tokens less likely than min_p x the top token's probability; 0 = off",
    "typical_p": "keep tokens whose surprise is close to the entropy (locally typical sampling); 1 = off",
    "repetition_penalty": "tokens already in prompt or output: positive logits divided by it, negative multiplied; 1 = off",
    "frequency_penalty": "subtract penalty x (times the token was generated); 0 = off",
    "presence_penalty": "subtract penalty once if the token was generated at all; 0 = off",
    "no_repeat_ngram_size": "forbid any n-gram of this size from appearing twice; 0 = off",
    "num_beams": "keep this many candidate sequences, return the best by summed logprob; 1 = off",
    "length_penalty": "beams only: the score is divided by length^penalty; > 0 favours longer beams",
    "max_new_tokens": "the most tokens to generate",
    "min_new_tokens": "end-of-sequence is forbidden until this many tokens",
    "stop_strings": "stop when the text contains one of these; it is trimmed from the output",
    "seed": "seeds this config's own random stream; none = pick one and report it",
    "early_stopping": "beams only (HF): true stops when num_beams finished; false (HF default) uses a heuristic; "
                      "\"never\" searches on",
    "top_n_sigma": "keep tokens whose logit is at least max - n x std of the logits; 0 = off (llama.cpp's -1)",
    "xtc_probability": "XTC: with this chance per step, remove every token at or above xtc_threshold but the "
                       "least likely of them; 0 = off",
    "xtc_threshold": "XTC: the probability a token needs to count as a 'top choice'; above 0.5 XTC does nothing",
    "dry_multiplier": "DRY: penalty for extending a repeated sequence, multiplier x base^(length - allowed); 0 = off",
    "dry_base": "DRY: how fast the penalty grows with the repeated length (>= 1)",
    "dry_allowed_length": "DRY: repeats up to this many tokens are not penalised",
    "dry_penalty_last_n": "DRY: how many recent tokens (prompt included) it scans; 0 or -1 = the whole context",
    "dry_sequence_breakers": "DRY: texts that end a repeated sequence (llama.cpp default: newline, :, \", *)",
    "mirostat": "Mirostat adaptive sampling: 0 = off, 1 = v1, 2 = v2 (llama.cpp); steers surprise toward tau",
    "mirostat_tau": "Mirostat: target surprise in bits (its state mu starts at 2 x tau)",
    "mirostat_eta": "Mirostat: learning rate of mu",
    "dynatemp_range": "dynamic temperature: temperature +- range, scaled by the normalised entropy; 0 = off",
    "dynatemp_exponent": "dynamic temperature: exponent on the normalised entropy",
    "epsilon_cutoff": "drop tokens with probability below this (HF EpsilonLogitsWarper); 0 = off",
    "eta_cutoff": "drop tokens below min(eta, sqrt(eta) x exp(-entropy)) (HF EtaLogitsWarper); 0 = off",
    "logit_bias": "token id or token text -> bias added to its logit (a text biases each of its tokens); "
                  "-inf bans",
    "banned_strings": "never emit these texts' token sequences (HF bad_words_ids: the text's own tokens)",
    "repetition_penalty_last_n": "the repetition penalty looks only at the last N tokens; 0 = the whole context",
    "sampler_order": "order of the sampling stages (like llama.cpp --samplers); unlisted stages keep their "
                     "default place after the listed ones; empty = the default (HF) order",
}

# The reorderable stages and their default order (engine/sampling/chain.py runs them). Kept here so the
# config can validate sampler_order without importing torch.
SAMPLER_STAGES: tuple[str, ...] = (
    "penalties", "dry", "no_repeat_ngram", "temperature", "top_n_sigma", "top_k", "top_p", "min_p",
    "typical_p", "epsilon_cutoff", "eta_cutoff", "xtc",
)
# Fields holding a list of strings (the TUI editor and the CLI read them as TOML arrays).
STRING_LIST_FIELDS = frozenset({"stop_strings", "dry_sequence_breakers", "banned_strings", "sampler_order"})
DRY_BREAKERS_DEFAULT = ("\n", ":", "\"", "*")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fail(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is invalid: {allowed}")


def _check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _fail(name, value, "it must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(name, value, "it must be valid Unicode text (no lone surrogates)") from None


@dataclass(frozen=True)
class DecodingConfig:
    """One decoding setup. Every default is neutral: all filters and penalties are off."""

    name: str = "custom"
    description: str = ""
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    stop_strings: tuple[str, ...] = field(default=())
    seed: int | None = None
    early_stopping: bool | str = False
    top_n_sigma: float = 0.0
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = 0
    dry_sequence_breakers: tuple[str, ...] = field(default=DRY_BREAKERS_DEFAULT)
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    logit_bias: tuple[tuple[int | str, float], ...] = field(default=())
    banned_strings: tuple[str, ...] = field(default=())
    repetition_penalty_last_n: int = 0
    sampler_order: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("name", "description"):
            _check_text(name, getattr(self, name))
        if not isinstance(self.do_sample, bool):
            raise _fail("do_sample", self.do_sample, "it must be true or false")
        self._check_float("temperature", lambda v: v >= 0, "it must be >= 0 (0 means greedy)")
        self._check_float("top_p", lambda v: 0 < v <= 1, "it must be in (0, 1]; 1 turns it off")
        self._check_float("typical_p", lambda v: 0 < v <= 1, "it must be in (0, 1]; 1 turns it off")
        self._check_float("min_p", lambda v: 0 <= v <= 1, "it must be in [0, 1]; 0 turns it off")
        self._check_float("repetition_penalty", lambda v: v > 0, "it must be > 0; 1 turns it off")
        for name in ("frequency_penalty", "presence_penalty"):
            self._check_float(name, lambda v: -2 <= v <= 2, "it must be in [-2, 2]; 0 turns it off")
        self._check_float("length_penalty", lambda v: True, "it must be a finite number")
        self._check_int("top_k", 0, "it must be an integer >= 0; 0 turns it off")
        self._check_int("no_repeat_ngram_size", 0, "it must be an integer >= 0; 0 turns it off")
        self._check_int("num_beams", 1, "it must be an integer >= 1; 1 turns beams off")
        self._check_int("max_new_tokens", 1, "it must be an integer >= 1")
        self._check_int("min_new_tokens", 0, "it must be an integer >= 0")
        if self.min_new_tokens > self.max_new_tokens:
            raise _fail("min_new_tokens", self.min_new_tokens, f"it must be <= max_new_tokens ({self.max_new_tokens})")
        self._check_stop_strings()
        if self.seed is not None and not (_is_int(self.seed) and 0 <= self.seed <= SEED_MAX):
            raise _fail("seed", self.seed, f"it must be an integer in [0, {SEED_MAX}] or none")
        self._check_new_samplers()
        if self.num_beams > 1 and (self.dry_multiplier or self.repetition_penalty_last_n):
            name = "dry_multiplier" if self.dry_multiplier else "repetition_penalty_last_n"
            raise _fail(name, getattr(self, name), "beams run through HF generate, which has no DRY or penalty "
                        "window: set it to 0 for beam configs, or num_beams=1")
        if self.num_beams > 1 and self.samples:
            raise _fail(
                "num_beams", self.num_beams,
                "beams run without sampling here: set do_sample=false (or temperature=0), or num_beams=1",
            )

    def _check_new_samplers(self) -> None:
        if not (isinstance(self.early_stopping, bool) or self.early_stopping == "never"):
            raise _fail("early_stopping", self.early_stopping, 'it must be true, false or "never" (HF\'s values)')
        self._check_float("top_n_sigma", lambda v: v >= 0, "it must be >= 0; 0 turns it off")
        self._check_float("xtc_probability", lambda v: 0 <= v <= 1, "it must be in [0, 1]; 0 turns it off")
        self._check_float("xtc_threshold", lambda v: 0 <= v <= 1, "it must be in [0, 1]; above 0.5 XTC does nothing")
        self._check_float("dry_multiplier", lambda v: v >= 0, "it must be >= 0; 0 turns DRY off")
        self._check_float("dry_base", lambda v: v >= 1, "it must be >= 1")
        self._check_int("dry_allowed_length", 1, "it must be an integer >= 1")
        self._check_int("dry_penalty_last_n", -1, "it must be an integer >= -1; 0 or -1 = the whole context")
        self._check_strings("dry_sequence_breakers")
        self._check_int("mirostat", 0, "it must be 0 (off), 1 or 2")
        if self.mirostat > 2:
            raise _fail("mirostat", self.mirostat, "it must be 0 (off), 1 or 2")
        self._check_float("mirostat_tau", lambda v: v > 0, "it must be > 0 (target surprise in bits)")
        self._check_float("mirostat_eta", lambda v: v > 0, "it must be > 0 (learning rate)")
        self._check_float("dynatemp_range", lambda v: v >= 0, "it must be >= 0; 0 turns it off")
        self._check_float("dynatemp_exponent", lambda v: v >= 0, "it must be >= 0")
        for name in ("epsilon_cutoff", "eta_cutoff"):
            self._check_float(name, lambda v: 0 <= v < 1, "it must be in [0, 1); 0 turns it off")
        self._check_logit_bias()
        self._check_strings("banned_strings")
        self._check_int("repetition_penalty_last_n", 0, "it must be an integer >= 0; 0 = the whole context")
        self._check_strings("sampler_order")
        for stage in self.sampler_order:
            if stage not in SAMPLER_STAGES:
                raise _fail("sampler_order", list(self.sampler_order),
                            f"{stage!r} is not a stage; it must list some of: {', '.join(SAMPLER_STAGES)}")
        if len(set(self.sampler_order)) != len(self.sampler_order):
            raise _fail("sampler_order", list(self.sampler_order), "each stage must appear at most once")

    def _check_strings(self, name: str) -> None:
        value = getattr(self, name)
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise _fail(name, value, "it must be a list of non-empty strings")
        for item in value:
            if not isinstance(item, str) or not item:
                raise _fail(name, value, "every entry must be a non-empty string")
            _check_text(name, item)
        object.__setattr__(self, name, tuple(value))

    def _check_logit_bias(self) -> None:
        value = self.logit_bias
        pairs = list(value.items()) if isinstance(value, dict) else value
        if isinstance(pairs, str) or not isinstance(pairs, (list, tuple)):
            raise _fail("logit_bias", value, 'it must map token ids or texts to biases, e.g. {"50256" = -100}')
        out = []
        for pair in pairs:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise _fail("logit_bias", value, "every entry must be a (token id or text, bias) pair")
            key, bias = pair
            if isinstance(value, dict) and isinstance(key, str) and key.strip().isdigit():
                key = int(key)  # OpenAI / llama.cpp JSON: a digit-only key is a token id
            if not (_is_int(key) and key >= 0) and not (isinstance(key, str) and key):
                raise _fail("logit_bias", value, f"key {key!r} must be a token id >= 0 or a non-empty text")
            if isinstance(key, str):
                _check_text("logit_bias", key)
            if not _is_number(bias) or math.isnan(bias) or bias == math.inf:
                raise _fail("logit_bias", value, f"the bias for {key!r} must be a number (-inf bans the token)")
            out.append((key, float(bias)))
        object.__setattr__(self, "logit_bias", tuple(out))

    # -- validation helpers -------------------------------------------------------------------
    def _check_float(self, name: str, ok, allowed: str) -> None:
        value = getattr(self, name)
        if not _is_number(value) or not math.isfinite(value):
            raise _fail(name, value, "it must be a finite number; " + allowed)
        if not ok(value):
            raise _fail(name, value, allowed)
        object.__setattr__(self, name, float(value))

    def _check_int(self, name: str, minimum: int, allowed: str) -> None:
        value = getattr(self, name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
            object.__setattr__(self, name, value)
        if not _is_int(value) or value < minimum:
            raise _fail(name, value, allowed)

    def _check_stop_strings(self) -> None:
        self._check_strings("stop_strings")

    # -- derived views ----------------------------------------------------------------------------
    @property
    def samples(self) -> bool:
        """True when this config draws tokens at random (do_sample and a temperature above 0)."""
        return self.do_sample and self.temperature > 0

    @property
    def greedy(self) -> bool:
        """True when this config always takes the most likely (penalised) token, beams aside."""
        return not self.samples and self.num_beams == 1

    def changed_fields(self) -> set[str]:
        """Names of the fields whose value differs from the default."""
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}

    def summary(self) -> str:
        """One line for pane titles, e.g. ``T=0.7 p=0.9 k=off rep=1.1 seed=42``."""
        if self.num_beams > 1:
            parts = [f"beams={self.num_beams}"]
            if self.length_penalty != 1.0:
                parts.append(f"lp={_num(self.length_penalty)}")
        elif self.samples:
            parts = [
                f"T={_num(self.temperature)}",
                f"p={_num(self.top_p)}" if self.top_p < 1 else "p=off",
                f"k={self.top_k}" if self.top_k else "k=off",
            ]
            if self.min_p > 0:
                parts.append(f"min_p={_num(self.min_p)}")
            if self.typical_p < 1:
                parts.append(f"typ={_num(self.typical_p)}")
            parts += self._modern_summary()
        else:
            parts = ["greedy"]
        if self.repetition_penalty != 1.0:
            parts.append(f"rep={_num(self.repetition_penalty)}")
        if self.frequency_penalty:
            parts.append(f"freq={_num(self.frequency_penalty)}")
        if self.presence_penalty:
            parts.append(f"pres={_num(self.presence_penalty)}")
        if self.no_repeat_ngram_size:
            parts.append(f"ngram={self.no_repeat_ngram_size}")
        if self.dry_multiplier:
            parts.append(f"dry={_num(self.dry_multiplier)}")
        if self.logit_bias:
            parts.append(f"bias={len(self.logit_bias)}")
        if self.banned_strings:
            parts.append(f"banned={len(self.banned_strings)}")
        if self.samples:
            parts.append(f"seed={self.seed}" if self.seed is not None else "seed=auto")
        return " ".join(parts)

    def _modern_summary(self) -> list[str]:
        parts = []
        if self.top_n_sigma:
            parts.append(f"nsigma={_num(self.top_n_sigma)}")
        if self.xtc_probability and self.xtc_threshold <= 0.5:
            parts.append(f"xtc={_num(self.xtc_probability)}@{_num(self.xtc_threshold)}")
        if self.mirostat:
            parts.append(f"mirostat{self.mirostat}(tau={_num(self.mirostat_tau)})")
        if self.dynatemp_range:
            parts.append(f"dyT=+-{_num(self.dynatemp_range)}")
        if self.epsilon_cutoff:
            parts.append(f"eps={_num(self.epsilon_cutoff)}")
        if self.eta_cutoff:
            parts.append(f"eta={_num(self.eta_cutoff)}")
        return parts

    def to_dict(self, *, only_changed: bool = False) -> dict[str, Any]:
        """Plain data (stop_strings as a list); with only_changed, just the non-default fields."""
        keep = self.changed_fields() if only_changed else None
        out = {}
        for f in dataclasses.fields(self):
            if keep is not None and f.name not in keep:
                continue
            value = getattr(self, f.name)
            if f.name == "logit_bias":
                value = logit_bias_dict(value)
            out[f.name] = list(value) if f.name in STRING_LIST_FIELDS else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "config") -> DecodingConfig:
        """Build a config from plain data; unknown keys raise ConfigError with a did-you-mean hint."""
        unknown = [key for key in data if key not in FIELD_NAMES]
        if unknown:
            raise unknown_key_error(unknown[0], where)
        return cls(**data)

    def replace(self, **changes: Any) -> DecodingConfig:
        """A validated copy with some fields changed."""
        unknown = [key for key in changes if key not in FIELD_NAMES]
        if unknown:
            raise unknown_key_error(unknown[0], "config")
        return dataclasses.replace(self, **changes)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DecodingConfig))
DEFAULTS = DecodingConfig()


def unknown_key_error(key: str, where: str) -> ConfigError:
    """ConfigError for an unknown field, suggesting the closest real one."""
    close = difflib.get_close_matches(str(key), FIELD_NAMES, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else f" Known fields: {', '.join(FIELD_NAMES)}."
    return ConfigError(f"unknown key {key!r} in {where}.{hint}")


def logit_bias_dict(pairs) -> dict[str, float]:
    """logit_bias as a TOML/JSON table: token ids as digit keys, texts as themselves.

    A text made only of digits would read back as a token id, so such texts are refused here.
    """
    out = {}
    for key, bias in pairs:
        if isinstance(key, str) and key.strip().isdigit():
            raise ConfigError(f"logit_bias text {key!r} is all digits and would read back as a token id; "
                              "bias its token id instead")
        out[str(key)] = bias
    return out


def effective_order(config: DecodingConfig) -> tuple[str, ...]:
    """The config's sampler_order, then every unlisted stage in its default place."""
    listed = tuple(config.sampler_order)
    return listed + tuple(name for name in SAMPLER_STAGES if name not in listed)


def _num(value: float) -> str:
    return f"{value:g}"
