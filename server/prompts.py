"""Prompts to token ids (run in a worker thread): completion prompts as given, chat through the template.

Each worker thread uses its own copy of the tokenizer: a Rust tokenizer used from two threads at once
can fail ("Already borrowed"), and the scheduler thread decodes with the model's own copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import torch
from decodelab.engine.conversation import chat_token_ids
from decodelab.engine.results import PromptError

if TYPE_CHECKING:
    from decodelab.engine.backends.base import Backend

    from .schemas import Message


def tokenize_prompt(loaded: Backend, tok: Any, prompt: str | list[int]) -> torch.Tensor:
    """A completion prompt as given (text through the tokenizer, or token ids checked against the vocabulary)."""
    if isinstance(prompt, list):
        ids = check_token_ids(loaded, prompt)
    else:
        ids = tok(prompt)["input_ids"] if prompt else []
    return _start(loaded, tok, ids)


def check_token_ids(loaded: Backend, ids: list[int]) -> list[int]:
    """The ids, or PromptError naming the first that is not one of the model's tokens."""
    return loaded.runner.check_token_ids(ids)


def tokenize_chat(loaded: Backend, tok: Any, messages: Iterable[Message]) -> torch.Tensor:
    """Chat messages through the tokenizer's chat template (plain lines when it has none)."""
    plain = [{"role": m.template_role, "content": m.text()} for m in messages]
    if getattr(tok, "chat_template", None):
        ids = chat_token_ids(tok, plain, continue_final=False)  # OpenAI: always a new assistant message
    else:
        ids = tok("\n".join(m["content"] for m in plain))["input_ids"]
    return _start(loaded, tok, ids)


def prompt_text(tok: Any, prompt: str | list[int]) -> str:
    """The prompt as text (for echo)."""
    if isinstance(prompt, str):
        return prompt
    return tok.decode(prompt, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _start(loaded, tok, ids: list[int]) -> torch.Tensor:
    if not ids:
        bos = tok.bos_token_id
        if bos is None:
            raise PromptError("the prompt is empty and this model has no BOS token to start from; send some text")
        ids = [bos]
    return torch.tensor(ids, dtype=torch.long, device=loaded.runner.device)
