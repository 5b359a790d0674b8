"""Checks against the loaded model made before a run starts or an edit is applied, so no pane's text is lost."""

from __future__ import annotations


def prompt_tokens(loaded, prompt: str) -> tuple[int | None, str | None]:
    """The prompt's length in tokens (through the chat template when on), or the reason it cannot be encoded."""
    if loaded is None or not loaded.can("tokenizer"):
        return None, None  # a remote server counts its own tokens
    from decodelab.engine.decoding.run import encode_prompt
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
    """Why max_new_tokens does not fit in the model's context after this prompt; None when it fits."""
    limit = getattr(loaded, "context_length", None) if loaded is not None else None
    if limit is None or prompt_len is None:
        return None
    room = limit - prompt_len
    if room < 1:
        from decodelab.engine.decoding.run import tokens

        return f"the prompt is {tokens(prompt_len)} but the model's context is {limit}: shorten the prompt"
    if max_new_tokens > room:
        return (f"max_new_tokens={max_new_tokens} does not fit: the model's context is {limit} tokens and the "
                f"prompt takes {prompt_len}, so at most {room} new tokens; lower it or shorten the prompt")
    return None


def vocab_error(loaded, config) -> str | None:
    """Why a logit_bias token id is not one of the model's tokens; None when every id is."""
    runner = loaded.runner  # a remote backend has none, and no vocabulary to check against
    if runner is None:
        return None
    size = runner.vocab_size
    outside = [key for key, _ in config.logit_bias if isinstance(key, int) and key >= size]
    if outside:
        return (f"logit_bias token id {outside[0]} is outside this model's vocabulary (ids 0-{size - 1}): "
                "use an id below it, or the token's text")
    if config.logprob_tokens and getattr(loaded, "tokenizer", None) is not None:
        from decodelab.engine.config import ConfigError
        from decodelab.engine.sampling.vocab import named_ids

        try:
            named_ids(config.logprob_tokens, loaded.tokenizer, size)
        except ConfigError as exc:
            return str(exc)
    return None


def run_error(loaded, prompt: str, configs) -> str | None:
    """Why this run would fail before producing anything (chat template, context length); None when it can run."""
    length, error = prompt_tokens(loaded, prompt)
    if error:
        return error
    for config in configs:
        problem = context_error(loaded, length, config.max_new_tokens)
        if problem:
            return f"pane {config.name}: {problem}"
    return None
