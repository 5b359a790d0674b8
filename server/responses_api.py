"""OpenAI's Responses API (POST /v1/responses), text in and text out, whole or streamed, as vLLM serves it.

A request is read into the chat completions request it means (input -> messages, instructions -> a system
message, max_output_tokens -> max_tokens, text.format -> response_format, top_logprobs -> logprobs), so it takes
every setting, constraint and refusal the chat endpoint takes; only the answer's shape differs: a `response`
object with one assistant `message` item holding one `output_text` part, or its stream of typed events
(response.created ... response.output_text.delta ... response.completed).

decodelab keeps no responses: `previous_response_id` and `background` are refused, not dropped; `store` changes
nothing and is named in X-Decodelab-Ignored, as on the chat endpoint (a later previous_response_id gets the 400).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from decodelab.engine.results import Completion, TokenStep

from . import responses
from .errors import ApiError
from .scheduler import Job

IGNORED = ("store", "metadata", "reasoning", "parallel_tool_calls", "tool_choice", "truncation", "include", "service_tier",
           "prompt_cache_key", "safety_identifier", "max_tool_calls")
"""Responses fields that change nothing a text-only sampler does: accepted and named in X-Decodelab-Ignored (tools
are refused when non-empty, by the chat endpoint's own check)."""
TEXT_KEYS = {"format", "verbosity"}
FORMAT_KEYS = {"type", "name", "schema", "strict", "description"}
PART_TYPES = ("input_text", "output_text", "text")
CHAT_ONLY = ("messages", "n", "max_tokens", "max_completion_tokens", "response_format", "logprobs", "stream_options")
"""Chat completions fields with a Responses name of their own (or none): refused so a client learns the right one."""
RESPONSES_NAME = {"messages": "input", "max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
                  "response_format": "text.format", "logprobs": "top_logprobs", "n": None, "stream_options": None}


@dataclass
class Asked:
    """What the Responses request said, echoed back in every response object (as OpenAI does)."""

    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: dict = field(default_factory=lambda: {"format": {"type": "text"}})
    metadata: dict = field(default_factory=dict)
    user: str | None = None
    top_logprobs: int | None = None


def _message_content(item: Any, where: str) -> str | list:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiError(400, f"{where}.content must be text or a list of input_text parts", param=f"{where}.content")
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in PART_TYPES or not isinstance(part.get("text"), str):
            raise ApiError(400, f"{where}.content[{j}] is a {kind or type(part).__name__} part: decodelab serves "
                           "text-only models, so parts must be input_text (or output_text) with a text",
                           param=f"{where}.content[{j}]")
        parts.append({"type": "text", "text": part["text"]})
    return parts


def _messages(value: Any) -> list[dict]:
    """The Responses `input` as chat messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise ApiError(400, "input must be text or a non-empty list of messages ({\"role\": \"user\", \"content\": ...})",
                       param="input")
    out = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} must be a message object", param=where)
        kind = item.get("type", "message")
        if kind != "message":
            raise ApiError(400, f"{where} is a {kind} item: decodelab serve takes message items only (text in, text "
                           "out; it calls no tools and keeps no reasoning items)", param=f"{where}.type")
        unknown = set(item) - {"type", "role", "content", "id", "status"}
        if unknown:
            raise ApiError(400, f"Unknown parameter: '{where}.{sorted(unknown)[0]}'.", param=f"{where}.{sorted(unknown)[0]}",
                           code="unknown_parameter")
        out.append({"role": item.get("role"), "content": _message_content(item, where)})
    return out


def _format(text: Any, chat: dict) -> dict:
    """text.format as the chat endpoint's response_format (json_schema's name/schema/strict move into json_schema)."""
    if text is None:
        return {"format": {"type": "text"}}
    if not isinstance(text, dict):
        raise ApiError(400, "text must be an object such as {\"format\": {\"type\": \"json_schema\", ...}}", param="text")
    for key in text:
        if key not in TEXT_KEYS:
            raise ApiError(400, f"Unknown parameter: 'text.{key}'.", param=f"text.{key}", code="unknown_parameter")
    form = text.get("format") or {"type": "text"}
    if not isinstance(form, dict):
        raise ApiError(400, "text.format must be an object such as {\"type\": \"json_object\"}", param="text.format")
    for key in form:
        if key not in FORMAT_KEYS:
            raise ApiError(400, f"Unknown parameter: 'text.format.{key}'.", param=f"text.format.{key}",
                           code="unknown_parameter")
    kind = form.get("type")
    if kind == "json_schema":
        if "schema" not in form:
            raise ApiError(400, "text.format with type json_schema needs a schema", param="text.format.schema")
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            k: form[k] for k in ("name", "schema", "strict", "description") if k in form}}
    elif kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind != "text":
        raise ApiError(400, f"text.format.type must be text, json_object or json_schema (got {kind!r})",
                       param="text.format.type")
    return {**text, "format": form}


def translate(data: dict) -> tuple[dict, Asked, list[str]]:
    """A Responses request body -> (the chat completions body it means, what to echo back, ignored field names)."""
    for name in CHAT_ONLY:
        if name in data:
            instead = RESPONSES_NAME[name]
            hint = f"the Responses API calls it {instead}" if instead else "the Responses API has no such field"
            raise ApiError(400, f"{name} is a chat completions field: {hint} (or POST /v1/chat/completions)",
                           param=name, code="unknown_parameter")
    for name in ("previous_response_id", "conversation"):
        if data.get(name) is not None:
            raise ApiError(400, f"decodelab serve keeps no responses or conversations, so {name} cannot be followed: "
                           "send the whole conversation in input", param=name)
    if data.get("prompt") is not None:
        raise ApiError(400, "decodelab serve keeps no stored prompts, so a prompt reference cannot be used: send the "
                       "text in instructions and input", param="prompt")
    if data.get("max_output_tokens") == 0:
        raise ApiError(400, "max_output_tokens=0 generates nothing: ask for at least 1 token", param="max_output_tokens")
    if data.get("background"):
        raise ApiError(400, "background responses are not supported: decodelab serve answers while you wait (send "
                       "stream=true for tokens as they come)", param="background")
    if "input" not in data:
        raise ApiError(400, "input is required", param="input")
    data = dict(data)
    asked = Asked()
    chat: dict = {"messages": _messages(data.pop("input"))}
    instructions = data.pop("instructions", None)
    if instructions is not None:
        if not isinstance(instructions, str):
            raise ApiError(400, "instructions must be text", param="instructions")
        chat["messages"].insert(0, {"role": "system", "content": instructions})
        asked.instructions = instructions
    if data.get("max_output_tokens") is not None:
        chat["max_tokens"] = asked.max_output_tokens = data.pop("max_output_tokens")
    data.pop("max_output_tokens", None)
    asked.text = _format(data.pop("text", None), chat)
    top = data.pop("top_logprobs", None)
    if top is not None:
        chat["logprobs"], chat["top_logprobs"] = True, top
        asked.top_logprobs = top
    ignored = [name for name in IGNORED if name in data]
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        asked.metadata = metadata
    for name in (*ignored, "background", "previous_response_id", "conversation", "prompt"):
        data.pop(name, None)
    asked.temperature, asked.top_p, asked.user = data.get("temperature"), data.get("top_p"), data.get("user")
    chat.update(data)  # model, stream, temperature, top_p, seed, user, tools, and every decodelab setting
    return chat, asked, ignored


class ResponseShape:
    """One Responses answer: its ids, and the response object at each point of its life."""

    def __init__(self, model: str, asked: Asked, shape: responses.Shape):
        self.model, self.asked, self.shape = model, asked, shape
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.sequence = 0

    def body(self, status: str, output: list, usage: dict | None = None, reason: str | None = None) -> dict:
        a = self.asked
        return {"id": self.id, "object": "response", "created_at": self.created, "status": status, "error": None,
                "incomplete_details": {"reason": reason} if reason else None, "instructions": a.instructions,
                "max_output_tokens": a.max_output_tokens, "model": self.model, "output": output,
                "parallel_tool_calls": False, "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None}, "store": False,
                "temperature": 1.0 if a.temperature is None else a.temperature, "text": a.text, "tool_choice": "none",
                "tools": [], "top_p": 1.0 if a.top_p is None else a.top_p, "top_logprobs": a.top_logprobs,
                "truncation": "disabled", "usage": usage,
                "user": a.user, "metadata": a.metadata}

    def part(self, text: str, steps: tuple[TokenStep, ...] | None) -> dict:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": self.logprobs(steps or ())}

    def item(self, status: str, parts: list) -> dict:
        return {"type": "message", "id": self.item_id, "status": status, "role": "assistant", "content": parts}

    def logprobs(self, steps: tuple[TokenStep, ...]) -> list:
        if self.shape.top is None:
            return []
        return responses.logprobs(steps, self.shape.top, True, bytes_of=self.shape.bytes_of,
                                  processed=self.shape.processed)["content"]

    def usage(self, prompt_tokens: int, output_tokens: int) -> dict:
        return {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt_tokens + output_tokens}

    def whole(self, completion: Completion, prompt_tokens: int) -> dict:
        """The non-streaming answer."""
        steps = responses.shown_steps(completion.steps, completion.stop_reason)
        cut = completion.stop_reason == "max_new_tokens"
        item = self.item("incomplete" if cut else "completed", [self.part(completion.text, steps)])
        body = self.body("incomplete" if cut else "completed", [item],
                         self.usage(prompt_tokens, len(completion.token_ids)), "max_output_tokens" if cut else None)
        if self.shape.stats:
            body["decodelab"] = [responses.stats_record(s, self.shape.top) for s in completion.steps]
        return body

    def event(self, kind: str, **fields: Any) -> str:
        """One server-sent event, named as OpenAI names it (the SDK reads the type from the data)."""
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"

    async def stream(self, job: Job, prompt_tokens: int) -> AsyncIterator[str]:
        """The typed events of one response: created, in_progress, the item and its part opened, a delta per step
        of text, then everything closed and response.completed (its status incomplete at max_output_tokens). An
        engine error mid-way is an `error` event then response.failed."""
        hold = max((len(s) for s in job.requests[0].configs[0].stop_strings), default=1) - 1
        text_stream = responses.ChoiceStream(self.shape, 0, hold)
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        text, tokens = "", 0
        listed: list[TokenStep] = []
        try:
            yield self.event("response.created", response=self.body("in_progress", []))
            yield self.event("response.in_progress", response=self.body("in_progress", []))
            yield self.event("response.output_item.added", output_index=0, item=self.item("in_progress", []))
            yield self.event("response.content_part.added", part=self.part("", ()), **where)
            finished = None
            while finished is None:
                kind, _, payload = await job.events.get()
                if kind == "error":
                    error = ApiError(500, payload).body()["error"]
                    yield self.event("error", code=error["type"], message=error["message"], param=None)
                    failed = self.body("failed", [])
                    failed["error"] = {"code": "server_error", "message": payload}
                    yield self.event("response.failed", response=failed)
                    return
                if kind == "done":
                    break
                steps, done = payload.tokens.get(0, ()), payload.finished.get(0)
                tokens += len(steps)
                chunk = text_stream.step(steps, payload.texts.get(0), done, None)
                shown = responses.shown_steps(steps, done)
                listed += shown
                if chunk is not None:
                    piece = chunk["choices"][0]["delta"].get("content", "")
                    if piece or shown:
                        text += piece
                        yield self.event("response.output_text.delta", delta=piece,
                                         logprobs=self.logprobs(tuple(shown)), **where)
                finished = done
            cut = finished == "max_new_tokens"
            status = "incomplete" if cut else "completed"
            part = self.part(text, tuple(listed))
            yield self.event("response.output_text.done", text=text, logprobs=part["logprobs"], **where)
            yield self.event("response.content_part.done", part=part, **where)
            item = self.item(status, [part])
            yield self.event("response.output_item.done", output_index=0, item=item)
            # response.completed even when cut at max_output_tokens (the status inside says incomplete): the openai
            # SDK's stream helper waits for that event alone, and vLLM sends it so
            yield self.event("response.completed", response=self.body(
                status, [item], self.usage(prompt_tokens, tokens), "max_output_tokens" if cut else None))
        finally:
            job.cancel.set()  # a client that went away stops its row at the next step
