"""llama.cpp: llama-cli / llama-server command-line flags, the sampler chain included."""

from __future__ import annotations

import shlex

from ...config import STAGE_TABLE, DecodingConfig
from ...grammars import choice_gbnf
from .common import Converted, id_biases, unsupported


def to_llamacpp(config: DecodingConfig) -> Converted:
    """llama.cpp command-line flags (llama-cli / llama-server), with llama.cpp's own defaults neutralised."""
    flags = [
        "--temp", f"{config.temperature if config.samples else 0.0:g}",
        "--top-k", str(config.top_k),
        "--top-p", f"{config.top_p:g}",
        "--min-p", f"{config.min_p:g}",
        "--typical", f"{config.typical_p:g}",
        "--repeat-penalty", f"{config.repetition_penalty:g}",
        "--repeat-last-n", str(config.repetition_penalty_last_n or -1),
        "--frequency-penalty", f"{config.frequency_penalty:g}",
        "--presence-penalty", f"{config.presence_penalty:g}",
        *_llamacpp_modern(config),
        "--samplers", llamacpp_samplers(config),
        "-n", str(config.max_new_tokens),
    ]
    if config.seed is not None:
        flags += ["--seed", str(config.seed)]
    for stop in config.stop_strings:
        flags += ["--reverse-prompt", stop]
    notes = unsupported(config, "llama.cpp", {"no_repeat_ngram_size": 0, "num_beams": 1, "length_penalty": 1.0,
                                                "min_new_tokens": 0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
                                                "banned_strings": (), "smoothing_factor": 0.0, "top_h": 0.0,
                                                "tfs": 1.0, "top_a": 0.0, "logprob_tokens": (),
                                                "guidance_scale": 1.0})
    if config.tfs < 1:
        notes[-1:] = notes[-1:] + ["llama.cpp removed tail-free sampling in 2024: use text-generation-webui for tfs"]
    if config.json_schema:
        flags += ["--json-schema", config.json_schema]
    elif config.grammar or config.choice:
        flags += ["--grammar", config.grammar or choice_gbnf(config.choice)]
    elif config.regex:
        notes.append(f"llama.cpp has no regex constraint: this preset's regex={config.regex!r} is NOT carried "
                     "over (write it as a GBNF --grammar)")
    for token, bias in id_biases(config, "llama.cpp's --logit-bias", notes).items():
        flags += ["--logit-bias", f"{token}{'+' if bias >= 0 else '-'}{abs(bias):g}"]
    notes.append("llama.cpp's defaults (top-k 40, top-p 0.95, min-p 0.05, a 64-token penalty window, DRY and "
                 "XTC settings) are overridden explicitly; --samplers puts them in decodelab's order")
    if config.mirostat and config.samples:
        notes.append("llama.cpp ignores --samplers (top-k, top-p, typical, ...) when Mirostat is on; decodelab "
                     "applies them before Mirostat, so set them neutral to match")
    if config.frequency_penalty or config.presence_penalty:
        notes.append("llama.cpp's frequency/presence penalties count tokens in the penalty window (prompt "
                     "included), not only generated ones as decodelab and OpenAI do")
    return Converted(" ".join(shell_quote(f) for f in flags), notes)



# llama.cpp's --samplers names for decodelab's reorderable stages (None: llama.cpp has no such stage).
LLAMACPP_SAMPLERS = {row.name: row.llamacpp for row in STAGE_TABLE if row.place == "chain"}



def llamacpp_samplers(config: DecodingConfig) -> str:
    from ...config import effective_order

    names = [LLAMACPP_SAMPLERS[s] for s in effective_order(config) if LLAMACPP_SAMPLERS[s]]
    if config.adaptive_target >= 0 and config.samples:
        names.append("adaptive_p")  # llama.cpp runs adaptive-p only when the chain lists it, last
    return ";".join(names)



def _llamacpp_modern(config: DecodingConfig) -> list[str]:
    """Flags for the llama.cpp-family samplers, always written (llama.cpp's defaults are not all neutral)."""
    flags = ["--top-nsigma", f"{config.top_n_sigma or -1:g}",
             "--xtc-probability", f"{config.xtc_probability:g}", "--xtc-threshold", f"{config.xtc_threshold:g}",
             "--dry-multiplier", f"{config.dry_multiplier:g}", "--dry-base", f"{config.dry_base:g}",
             "--dry-allowed-length", str(config.dry_allowed_length),
             "--dry-penalty-last-n", str(config.dry_penalty_last_n or -1),
             "--mirostat", str(config.mirostat), "--mirostat-ent", f"{config.mirostat_tau:g}",
             "--mirostat-lr", f"{config.mirostat_eta:g}",
             "--dynatemp-range", f"{config.dynatemp_range:g}", "--dynatemp-exp", f"{config.dynatemp_exponent:g}",
             "--adaptive-target", f"{config.adaptive_target if config.adaptive_target >= 0 else -1:g}",
             "--adaptive-decay", f"{config.adaptive_decay:g}"]
    for breaker in config.dry_sequence_breakers or ("none",):
        flags += ["--dry-sequence-breaker", breaker]
    return flags


def shell_quote(text: str) -> str:
    """One shell word; text with control characters (a newline stop string) as bash's $'…', so the command
    stays on one line and the newline is still a newline."""
    if text.isprintable():
        return shlex.quote(text)
    return "$'" + "".join(_ansi_c(c) for c in text) + "'"


_ANSI_C = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}


def _ansi_c(c: str) -> str:
    """One character inside bash's $'…'."""
    if c in _ANSI_C:
        return _ANSI_C[c]
    if c.isprintable():
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
