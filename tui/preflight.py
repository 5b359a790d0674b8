"""Checks against the loaded model made before a run starts or an edit is applied, so no pane's text is lost: the
engine's preflight (engine/decoding/preflight.py), its one wording given back as text for a notification."""

from __future__ import annotations


def prompt_tokens(loaded, prompt: str) -> tuple[int | None, str | None]:
    """The prompt's length in tokens (through the chat template when on), or the reason it cannot be encoded."""
    if loaded is None or not loaded.can("tokenizer"):
        return None, None  # a remote server counts its own tokens
    from decodelab.engine.decoding.preflight import encode_prompt
    from decodelab.engine.results import PromptError

    try:
        return int(encode_prompt(loaded, prompt).numel()), None
    except PromptError as exc:
        if "cannot take a conversation" in str(exc):
            hint = " (shift+n starts a new conversation, shift+p clears the system prompt)"
        elif "chat template" in str(exc):
            hint = " (ctrl+t)"
        else:
            hint = ""
        return None, f"{exc}{hint}"


def context_error(loaded, prompt_len: int | None, max_new_tokens: int) -> str | None:
    """Why max_new_tokens does not fit in the model's context after this prompt (the engine's own wording); None when
    it fits."""
    if loaded is None or prompt_len is None or loaded.context_length is None:
        return None
    from decodelab.engine.decoding.preflight import check_context
    from decodelab.engine.results import PromptError

    try:
        check_context(loaded, prompt_len, max_new_tokens)
    except PromptError as exc:
        return str(exc)
    return None


def vocab_error(loaded, config) -> str | None:
    """Why a setting that names tokens (logit_bias, banned_strings, DRY's breakers, logprob_tokens) cannot be taken by
    this model, in the engine's own wording; None when it can (a remote server checks its own)."""
    if loaded is None or loaded.runner is None:
        return None
    from decodelab.engine.config import ConfigError
    from decodelab.engine.decoding.preflight import check_tokens

    try:
        check_tokens(loaded, config)
    except ConfigError as exc:
        return str(exc)
    return None


def run_error(loaded, prompt: str, configs) -> str | None:
    """Why this run would fail before producing anything (chat template, context length); None when it can run."""
    length, error = prompt_tokens(loaded, prompt)
    if error:
        return error
    for config in configs:
        problem = context_error(loaded, length, config.max_new_tokens) or vocab_error(loaded, config) or \
            engine_error(loaded, config)
        if problem:
            return f"pane {config.name}: {problem}"
    return None


def engine_error(loaded, config) -> str | None:
    """What this pane's model's engine cannot do (beams, guidance), naming the engine; None when it can."""
    if loaded is None or loaded.runner is None:
        return None
    from decodelab.engine.decoding.preflight import check_engine
    from decodelab.engine.results import PromptError

    try:
        check_engine(loaded, [config])
    except PromptError as exc:
        return str(exc)
    return None
