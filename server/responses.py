"""Completions and chat completions in OpenAI's wire format, whole or as stream chunks."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from decodelab.engine.decoding.token_bytes import REPLACEMENT
from decodelab.engine.results import Completion, TokenStep, json_number

FINISH = {"eos": "stop", "stop_string": "stop", "stop_token": "stop", "max_new_tokens": "length", "cancelled": "stop"}


@dataclass
class Shape:
    """What one request asked to get back."""

    chat: bool
    model: str
    top: int | None  # logprobs alternatives per token; None = no logprobs at all
    stats: bool  # decodelab's full statistics per token
    include_usage: bool = False
    bytes_of: Callable[[int], bytes | None] | None = None
    """token id -> the bytes it stands for (engine/decoding/token_bytes.py), for chat logprobs' `bytes`."""
    processed: bool = False
    """llama.cpp's post_sampling_probs: report each logprob after the sampler chain (null: a stage removed it)."""

    def __post_init__(self) -> None:
        self.id = f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex[:16]}"
        self.created = int(time.time())

    def envelope(self, choices: list[dict], chunk: bool) -> dict:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}


def stats_record(step: TokenStep, top: int | None = None) -> dict:
    """decodelab's full statistics for one token (alternatives cut to `top` when given)."""
    num = json_number
    return {"id": step.token_id, "text": step.text, "logprob": num(step.logprob),
            "logprob_processed": num(step.logprob_processed), "rank": step.rank, "entropy": num(step.entropy),
            "entropy_processed": num(step.entropy_processed),
            "top": [[a.token_id, a.text, num(a.logprob), num(a.logprob_processed)] for a in step.top[:top]]}


def token_bytes(token_id: int, text: str, bytes_of: Callable[[int], bytes | None] | None = None) -> list[int]:
    """OpenAI's `bytes` of a token: its text's UTF-8, or, for a token that holds part of a character (its text
    is "" or U+FFFD), the bytes it really stands for, from the tokenizer."""
    if bytes_of is not None and (not text or REPLACEMENT in text):
        data = bytes_of(token_id)
        if data:
            return list(data)
    return list(text.encode("utf-8"))


def logprobs(steps: Sequence[TokenStep], top: int, chat: bool, offset: int = 0,
             bytes_of: Callable[[int], bytes | None] | None = None, processed: bool = False) -> dict:
    num = json_number
    if processed:  # llama.cpp's post_sampling_probs: the same tokens, their probabilities after the chain
        steps = [dataclasses.replace(s, logprob=s.logprob_processed,
                                     top=tuple(dataclasses.replace(a, logprob=a.logprob_processed) for a in s.top))
                 for s in steps]
    if chat:
        return {"content": [{"token": s.text, "logprob": num(s.logprob),
                             "bytes": token_bytes(s.token_id, s.text, bytes_of),
                             "top_logprobs": [{"token": a.text, "logprob": num(a.logprob),
                                               "bytes": token_bytes(a.token_id, a.text, bytes_of)}
                                              for a in s.top[:top]]}
                            for s in steps]}
    offsets, position = [], offset
    for s in steps:
        offsets.append(position)
        position += len(s.text)
    return {"tokens": [s.text for s in steps], "token_logprobs": [num(s.logprob) for s in steps],
            "top_logprobs": [{a.text: num(a.logprob) for a in s.top[:top]} for s in steps], "text_offset": offsets}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def shown_steps(steps: Iterable[TokenStep], reason: str | None) -> tuple[TokenStep, ...]:
    """The tokens logprobs list: the end-of-sequence token that ended a row writes no text, and OpenAI leaves it
    out (it came back as an extra "" entry)."""
    steps = tuple(steps)
    if reason == "eos" and steps and steps[-1].text == "":
        return steps[:-1]
    return steps


def prompt_logprobs(first: str, steps: Sequence[TokenStep], top: int) -> dict:
    """The echoed prompt's part of a legacy completion's logprobs (OpenAI's echo with logprobs): the first token has
    none (nothing came before it), each later one its logprob and top alternatives under the model alone."""
    num = json_number
    texts = [first] + [s.text for s in steps]
    offsets, position = [], 0
    for text in texts:
        offsets.append(position)
        position += len(text)
    return {"tokens": texts, "token_logprobs": [None] + [num(s.logprob) for s in steps],
            "top_logprobs": [None] + [{a.text: num(a.logprob) for a in s.top[:top]} for s in steps],
            "text_offset": offsets}


def whole(shape: Shape, completions: list[Completion], echos: list[str], prompt_tokens: int,
          prompts: Sequence[dict | None] = ()) -> dict:
    """The non-streaming response: one choice per completion, in index order (echos: one per completion; prompts:
    the echoed prompt's logprobs per completion, when echo asked for logprobs)."""
    choices = []
    for index, (c, echo) in enumerate(zip(completions, echos)):
        choice: dict[str, Any] = {"index": index, "finish_reason": FINISH.get(c.stop_reason, "stop"),
                                  "seed": c.seed if c.config.samples else None,
                  "logprobs": logprobs(shown_steps(c.steps, c.stop_reason), shape.top, shape.chat, len(echo),
                                       shape.bytes_of, processed=shape.processed)
                  if shape.top is not None
                  else None}
        before = prompts[index] if index < len(prompts) else None
        if before is not None and choice["logprobs"] is not None:
            choice["logprobs"] = {key: before[key] + choice["logprobs"][key] for key in before}
        if shape.chat:
            choice["message"] = {"role": "assistant", "content": c.text}
        else:
            choice["text"] = echo + c.text
        if shape.stats:
            choice["decodelab"] = [stats_record(s, shape.top) for s in c.steps]
        choices.append(choice)
    body = shape.envelope(choices, chunk=False)
    body["usage"] = usage(prompt_tokens, sum(len(c.token_ids) for c in completions))
    return body


class ChoiceStream:
    """One streamed choice: sends text as it becomes final (holding back a possible stop string's start)."""

    def __init__(self, shape: Shape, index: int, hold: int, echo: str = ""):
        self.shape, self.index, self.hold, self.echo = shape, index, hold, echo
        self.sent, self.text = 0, ""
        self.offset = len(echo)
        self.tokens = 0

    def first(self) -> dict | None:
        """The opening chunk: the assistant role (chat), or the echoed prompt (completions with echo)."""
        if self.shape.chat:
            return self._chunk({"delta": {"role": "assistant", "content": ""}})
        if self.echo:
            return self._chunk({"text": self.echo})
        return None

    def step(self, steps: tuple, text: str | None, finished: str | None, seed: int | None) -> dict | None:
        """The chunk for this step's tokens (None when there is nothing to send yet)."""
        self.tokens += len(steps)
        self.text = text if text is not None else self.text + "".join(s.text for s in steps)
        text = self.text
        end = len(text) if finished else max(self.sent, len(text) - self.hold)
        piece, self.sent = text[self.sent:end], max(self.sent, end)
        choice: dict = {}
        listed = shown_steps(steps, finished)
        if self.shape.top is not None and listed:
            choice["logprobs"] = logprobs(listed, self.shape.top, self.shape.chat, self.offset, self.shape.bytes_of,
                                          self.shape.processed)
            self.offset += sum(len(s.text) for s in listed)
        if self.shape.stats and steps:
            choice["decodelab"] = [stats_record(s, self.shape.top) for s in steps]
        if not (piece or choice or finished):
            return None
        if self.shape.chat:
            choice["delta"] = {"content": piece} if piece else {}
        else:
            choice["text"] = piece
        if finished:
            choice["finish_reason"] = FINISH.get(finished, "stop")
            choice["seed"] = seed
            if finished == "stop_string":
                choice["stop_reason"] = "stop string"
        return self._chunk(choice)

    def _chunk(self, fields: dict) -> dict:
        choice = {"index": self.index, "finish_reason": None, "logprobs": None}
        choice.update(fields)
        return self.shape.envelope([choice], chunk=True)
