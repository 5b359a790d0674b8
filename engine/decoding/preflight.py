"""The preflight: every check made before a run, with one wording per mistake. The CLI prints it as an error line,
the TUI as a notification, serve as a 400 in OpenAI's error shape; none of them words a mistake itself.

    encode_prompt    a text (through the chat template when chat is on) or chat messages -> token ids
    check_context    the context is checked first: a prompt or max_new_tokens that cannot fit is said as such
    check_engine     what the model's runner cannot do (beams, guidance), naming the engine
    check_tokens     settings that name tokens (logit_bias, banned_strings, DRY's breakers, logprob_tokens,
                     stop_token_ids) against the vocabulary and tokenizer, by the sampler stages' own checks
    check_constraint a constraint llguidance compiles but gives up on with this model's tokenizer (a{1000000})
    preflight        all of them, for a prompt and its configs; returns the prompt's ids
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from ..config import ConfigError, DecodingConfig
from ..conversation import Prompt, chat_token_ids, check_messages
from ..results import PromptError

if TYPE_CHECKING:
    from ..runners.base import LocalModel


def encode_prompt(loaded: LocalModel, prompt: Prompt) -> torch.Tensor:
    """Token ids [T] of the prompt: a text (through the chat template when the model spec asks for it), or a
    list of chat messages (always through the template; engine/conversation.py)."""
    tok = loaded.tokenizer
    if isinstance(prompt, list):
        try:
            messages = check_messages(prompt, "the prompt")
        except ConfigError as exc:
            raise PromptError(str(exc)) from None
        if not getattr(tok, "chat_template", None):
            raise PromptError("this model's tokenizer has no chat template, so it cannot take a conversation or a "
                              "system prompt; send one text prompt")
        ids = chat_token_ids(tok, messages)
    elif not isinstance(prompt, str):
        raise PromptError(f"the prompt must be text or a list of chat messages, not {type(prompt).__name__}")
    elif loaded.spec.chat:
        if not getattr(tok, "chat_template", None):
            raise PromptError("this model's tokenizer has no chat template; turn chat mode off")
        ids = chat_token_ids(tok, [{"role": "user", "content": prompt}])
    else:
        ids = tok(prompt)["input_ids"] if prompt else []
    if not ids:
        if tok.bos_token_id is None:
            raise PromptError("the prompt is empty and this model has no BOS token to start from; type a prompt")
        ids = [tok.bos_token_id]
    return torch.tensor(ids, dtype=torch.long, device=loaded.runner.device)


def check_context(loaded: LocalModel, prompt_len: int, max_new: int) -> None:
    limit = loaded.context_length
    if limit is None:
        return
    if prompt_len >= limit:
        raise PromptError(f"the prompt is {tokens(prompt_len)} but the model's context is {limit}: shorten it")
    if prompt_len + max_new > limit:
        raise PromptError(
            f"the prompt is {tokens(prompt_len)} and max_new_tokens is {max_new}, but the model's context is "
            f"{limit}: lower max_new_tokens to {limit - prompt_len} or shorten the prompt"
        )


def tokens(n: int) -> str:
    """'1 token', '2 tokens'."""
    return f"{n} token" if n == 1 else f"{n} tokens"


def check_engine(loaded: LocalModel, configs: Sequence[DecodingConfig]) -> None:
    """PromptError naming the engine when a config needs what the model's runner cannot do (the llama.cpp engine:
    beams run through transformers' generate, and guidance rows join the batch on a negative prompt)."""
    if any(c.num_beams > 1 for c in configs):
        loaded.runner.require("beams")
    if any(c.guidance_scale != 1 for c in configs):
        loaded.runner.require("guidance")


def check_tokens(loaded: LocalModel, config: DecodingConfig) -> None:
    """ConfigError naming the field when a setting names a token or text this model cannot take (a remote server
    checks its own)."""
    if loaded.runner is None:
        return
    from ..sampling import check_tokens as stage_checks

    stage_checks(config, loaded.runner.vocab_size, loaded.tokenizer)


def check_constraint(loaded: LocalModel, config: DecodingConfig) -> None:
    """ConfigError naming the field when llguidance cannot hold this config's constraint with this model's tokenizer:
    it compiles (DecodingConfig checked that) but the matcher gives up on its first steps (a resource limit, such as
    a{1000000}'s lexer). Probed on the first token the mask allows; a later give-up fails the run (ConstraintFailed)."""
    from ..grammars import constraint_of, matcher
    from ..sampling.constraints import ConstraintFailed, allowed_on_host, gave_up_message

    spec = constraint_of(config)
    if spec is None or loaded.runner is None or loaded.tokenizer is None:
        return
    eos = loaded.runner.eos_ids()
    vocab = loaded.runner.vocab_size
    m = matcher(*spec, loaded.tokenizer, vocab, tuple(eos))
    allowed = allowed_on_host([m], vocab)[0]
    if not m.is_error():
        first = next((t for t in allowed.nonzero().flatten().tolist() if t not in eos), None)
        if first is None or m.consume_token(first):
            return
    raise ConstraintFailed(gave_up_message(spec[0], 0, m), field=spec[0])


def preflight(loaded: LocalModel, prompt: Prompt, configs: Sequence[DecodingConfig]) -> torch.Tensor:
    """Every check before a run of these configs on the prompt (the context before anything else); the prompt's
    token ids."""
    prompt_ids = encode_prompt(loaded, prompt)
    check_context(loaded, prompt_ids.numel(), max(c.max_new_tokens for c in configs))
    check_engine(loaded, configs)
    for config in configs:
        check_tokens(loaded, config)
        check_constraint(loaded, config)
    return prompt_ids
