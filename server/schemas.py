"""Request bodies as pydantic models, and their translation into DecodingConfigs.

Unknown fields are refused (400 naming the field) rather than silently ignored; OpenAI fields that change
nothing here (metadata, store, …) are ignored and named in a header; OpenAI fields that decodelab cannot
honour are accepted only at their neutral value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from decodelab.engine.config import SETTING, ConfigError, DecodingConfig
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, StrictInt, StrictStr, field_validator

from .errors import ApiError

MAX_N = 16
MAX_TOP_LOGPROBS = 20
IGNORED = ("metadata", "store", "service_tier", "reasoning_effort", "parallel_tool_calls", "tool_choice",
           "function_call", "prediction", "modalities", "audio", "web_search_options", "verbosity",
           "prompt_cache_key", "safety_identifier", "tools", "functions")
"""OpenAI request fields that change nothing a text-only sampler does: accepted, ignored and named in the
X-Decodelab-Ignored response header (a field decodelab does not know at all is still a 400, so a typo such
as "temprature" is never silently dropped)."""
NULL_MEANS_DEFAULT = ("stream", "n", "echo", "logprobs")


def take_ignored(data: dict) -> list[str]:
    """Remove the OpenAI fields decodelab ignores from the body; their names. Tools that would have to be
    called are refused, never dropped."""
    for name in ("tools", "functions"):
        if data.get(name):
            raise ApiError(400, f"{name} are not supported: decodelab serve generates text only (send {name}: "
                           "null, or leave it out)", param=name)
    if data.get("modalities") not in (None, ["text"]):
        raise ApiError(400, "only text output is supported: modalities must be [\"text\"]", param="modalities")
    ignored = [name for name in IGNORED if name in data]
    for name in ignored:
        del data[name]
    for name in NULL_MEANS_DEFAULT:  # OpenAI's SDKs send null for "the default"
        if name in data and data[name] is None:
            del data[name]
    return ignored


DECLARED = {"min_new_tokens": "min_tokens"}
"""Settings Sampling declares under another stack's name (vLLM's)."""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False


class Sampling(BaseModel):
    """Fields both endpoints share: OpenAI's, vLLM's extensions, and decodelab's own."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    max_tokens: Annotated[StrictInt, Field(ge=0)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=0)] | None = None
    temperature: Annotated[float, Field(ge=0)] | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    num_beams: int | None = None
    length_penalty: float | None = None
    min_tokens: int | None = None
    seed: int | None = None
    stop: StrictStr | list[StrictStr] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: StrictStr | None = None
    logit_bias: dict[str, float | StrictStr] | None = None
    """OpenAI's: token id (or, decodelab's own, a text) -> bias; "-inf" or -100 and below ban the token."""
    decodelab_stats: StrictBool = False
    """decodelab's own: every token with its full statistics (alternatives, processed logprobs, entropy)."""
    n_probs: Annotated[StrictInt, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    """llama.cpp's: logprobs with this many alternatives per token."""
    post_sampling_probs: StrictBool = False
    """llama.cpp's: the logprobs reported are those after the sampler chain, not the model's own."""
    _settings: dict = PrivateAttr(default_factory=dict)
    """Every other decodelab setting, under whichever stack's name the client used (server/dialects.py)."""
    _sent: dict = PrivateAttr(default_factory=dict)
    """decodelab setting -> the name the client sent it under (so a 400 names that)."""

    def with_settings(self, settings: dict, sent: dict) -> "Sampling":
        self._settings, self._sent = settings, sent
        return self

    def config(self, max_new: int) -> DecodingConfig:
        """The DecodingConfig this request asks for (ApiError 400 naming the field if a value is out of range)."""
        temperature = 1.0 if self.temperature is None else self.temperature
        beams = self.num_beams or 1
        fields: dict[str, Any] = {
            "name": "request", "do_sample": temperature > 0 and beams == 1,
            "temperature": temperature if temperature > 0 else 1.0,
            "top_k": 0 if self.top_k in (None, -1) else self.top_k,
            "top_p": 1.0 if self.top_p is None else self.top_p, "max_new_tokens": max_new,
            "stop_strings": [self.stop] if isinstance(self.stop, str) else list(self.stop or []),
            "seed": self.seed,
        }
        declared: dict[str, str] = {}
        for name, value in (("min_p", self.min_p), ("typical_p", self.typical_p),
                            ("repetition_penalty", self.repetition_penalty),
                            ("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty),
                            ("no_repeat_ngram_size", self.no_repeat_ngram_size), ("num_beams", self.num_beams),
                            ("length_penalty", self.length_penalty), ("min_new_tokens", self.min_tokens)):
            if value is not None:
                fields[name] = value
                declared[name] = DECLARED.get(name, name)
        if self.logit_bias:
            fields["logit_bias"] = self.logit_bias
        for name, value in self._settings.items():
            if name in declared:
                raise ApiError(400, f"{self._sent[name]} and {declared[name]} are the same setting: send one of "
                               "them", param=self._sent[name])
            fields[name] = value
        try:
            return DecodingConfig(**fields)
        except ConfigError as exc:
            message, param = _as_request_error(exc, self._sent)
            raise ApiError(400, message, param=param) from None

    def candidates(self) -> int:
        """Rows per prompt: n, or best_of when that asks for more candidates to choose the n from."""
        return max(self.n, getattr(self, "best_of", None) or 1)

    def wanted_tokens(self) -> int | None:
        if self.max_completion_tokens is not None and self.max_tokens is not None:
            raise ApiError(400, "max_tokens and max_completion_tokens are the same setting (max_tokens is OpenAI's "
                           "older name): send one of them", param="max_completion_tokens")
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def _as_request_error(exc: ConfigError, sent: dict | None = None) -> tuple[str, str | None]:
    """The message and param of a 400, in the request's own field names (the name the client sent, else vLLM's,
    which include OpenAI's)."""
    message = str(exc)
    if exc.field not in SETTING:
        return message, None
    param = (sent or {}).get(exc.field) or SETTING[exc.field].name_in("vllm") or exc.field
    if message.startswith(exc.field):
        message = param + message[len(exc.field):]
    return message, param


class CompletionRequest(Sampling):
    prompt: StrictStr | list[StrictStr] | list[int] | list[list[int]] = ""
    echo: StrictBool = False
    logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    best_of: Annotated[StrictInt, Field(ge=1, le=MAX_N)] | None = None
    """OpenAI's legacy (and vLLM's): decode this many candidates per prompt, return the n with the highest summed
    logprob."""
    suffix: None = None

    def prompts(self) -> list[str | list[int]]:
        """Each prompt as text or token ids (a list of prompts gives n choices for each)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise ApiError(400, "prompt is an empty list: give a string, a list of strings, or a list of token ids", param="prompt")
        if all(isinstance(x, int) for x in p):  # pydantic gave one of the three list types: this one
            return [list(cast("list[int]", p))]
        return list(cast("list[str] | list[list[int]]", p))


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: StrictStr
    text: StrictStr

    @field_validator("type")
    @classmethod
    def _text(cls, value):
        if value != "text":
            raise ValueError(f"{value} content is not supported: decodelab serves text-only models (send text parts)")
        return value


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    @field_validator("name")
    @classmethod
    def _no_name(cls, value):
        if value is not None:  # chat templates have no place for it: refused, never dropped silently
            raise ValueError("a message's name is not supported (chat templates have no place for it): leave it out")
        return value

    @property
    def template_role(self) -> str:
        """The role a chat template knows: OpenAI's developer role is the system role."""
        return "system" if self.role == "developer" else self.role

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    logprobs: StrictBool = False
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None


class TokenizeRequest(BaseModel):
    """llama.cpp's and vLLM's /tokenize bodies: text as "content" (llama.cpp) or "prompt" (vLLM), or "messages"."""

    model_config = ConfigDict(extra="forbid")
    model: StrictStr | None = None
    content: StrictStr | None = None
    prompt: StrictStr | None = None
    messages: Annotated[list[Message], Field(min_length=1)] | None = None
    add_special: StrictBool | None = None
    add_special_tokens: StrictBool | None = None
    add_generation_prompt: StrictBool = True
    with_pieces: StrictBool = False

    def text(self) -> str | None:
        """The text to tokenize, or None for messages; ApiError unless exactly one of the three is given."""
        given = [name for name in ("content", "prompt", "messages") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ApiError(400, "give the text to tokenize as one of content (llama.cpp), prompt (vLLM) or messages",
                           param=given[1] if len(given) > 1 else "content")
        return self.content if self.content is not None else self.prompt


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: StrictStr | None = None
    tokens: list[StrictInt]
