"""Conversations: a prompt is either one text or a list of chat messages in the OpenAI format.

A message is {"role": "system" | "user" | "assistant", "content": text}. A list that ends with an
assistant message asks the model to continue that reply; otherwise it answers the last user message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence, Union

from .config import ConfigError

Prompt = Union[str, list]
ROLES = ("system", "user", "assistant")


def check_messages(messages: Any, where: str = "the conversation") -> list[dict]:
    """The messages as plain {"role", "content"} dicts, or a ConfigError saying which one is wrong and how.

    OpenAI's content parts ([{"type": "text", "text": ...}]) are joined into one text; other keys are dropped.
    """
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f"{where} must be a non-empty list of messages like "
                          '[{"role": "user", "content": "Hello"}]')
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ConfigError(f"{where}: message {i + 1} is {type(message).__name__}, "
                              "not an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ConfigError(f"{where}: message {i + 1} has role {role!r}; use one of {', '.join(ROLES)}")
        if isinstance(content, list):  # OpenAI's content parts: keep the text ones
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise ConfigError(f"{where}: message {i + 1} has a content part that is not text; "
                                  "decodelab runs text-only models")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise ConfigError(f"{where}: message {i + 1} ({role}) has no text content")
        out.append({"role": role, "content": content})
    if out[-1]["role"] == "system":
        raise ConfigError(f"{where} ends with a system message: add a user message after it")
    return out


def load_messages(path: str | Path) -> list[dict]:
    """A conversation file: a JSON list of messages, or an object with "messages" (an OpenAI request body)."""
    where = f"messages file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {where}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if isinstance(data, dict) and "messages" in data:
        data = data["messages"]
    return check_messages(data, where)


def build(user: str | None, system: str | None = None, earlier: Sequence[dict] = ()) -> Prompt:
    """The prompt for a turn: plain text when there is only one user message and no system prompt, else messages."""
    if not system and not earlier:
        return user or ""
    messages = ([{"role": "system", "content": system}] if system else []) + list(earlier)
    if user is not None:
        messages.append({"role": "user", "content": user})
    return messages


def last_user(prompt: Prompt) -> str:
    """The text of the prompt's last user message (the prompt itself when it is text)."""
    if isinstance(prompt, str):
        return prompt
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")


def with_reply(prompt: Prompt, reply: str) -> list[dict]:
    """The conversation after the model answered: the prompt's messages plus the reply (a continued reply
    extends it)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if messages and messages[-1]["role"] == "assistant":
        messages[-1] = {"role": "assistant", "content": messages[-1]["content"] + reply}
    else:
        messages.append({"role": "assistant", "content": reply})
    return messages


def chat_token_ids(tok: Any, messages: list[dict], continue_final: bool = True) -> list[int]:
    """The messages through the tokenizer's chat template; a final assistant message is continued, not closed
    (unless continue_final is False: then a new assistant message follows, as OpenAI's API does)."""
    if continue_final and messages[-1]["role"] == "assistant":
        text = tok.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    else:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]
