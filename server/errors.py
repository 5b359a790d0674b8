"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, code a string or null."""

from __future__ import annotations

from typing import Iterable

from pydantic import ValidationError
from starlette.responses import JSONResponse

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
         503: "server_error"}


class ApiError(Exception):
    """An HTTP error the client should see, with a message that says what to do."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def param_from_loc(loc: Iterable[int | str]) -> str | None:
    """pydantic's error location ('messages', 0, 'content') as OpenAI writes a param (messages[0].content)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[str]", "list[int]", "list[list[int]]", "int", "float", "bool", "none",
                      "constrained-int", "list[TextPart]", "function-after[_no_bias(), dict[str,float]]") \
                or "[" in str(part) or "(" in str(part):
            continue  # union branch names, not fields
        else:
            out += ("." if out else "") + str(part)
    return out or None


INSTEAD = {
    "max_new_tokens": "send max_tokens (OpenAI's name for it)", "n_predict": "send max_tokens (llama.cpp's n_predict "
    "is max_tokens over OpenAI's API)", "stop_strings": "send stop (OpenAI's name for it)",
    "prompt_logprobs": "send echo: true with logprobs on /v1/completions for the prompt's own logprobs",
    "logprob_tokens": "named-token logprobs are not served over HTTP (decodelab run takes logprob_tokens)",
    "logprob_token_ids": "named-token logprobs are not served over HTTP (decodelab run takes logprob_tokens)",
    "max_output_tokens": "that is the Responses API's name: POST /v1/responses, or send max_tokens here",
    "input": "that is the Responses API's field: POST /v1/responses, or send messages (chat) or prompt here",
}
"""Fields a client may send from another API or stack, and what to send here instead."""


def validation_error(exc: ValidationError) -> ApiError:
    """The first pydantic error, naming the field."""
    errors = exc.errors(include_url=False)
    first = next((e for e in errors if e["type"] == "value_error"), errors[0])  # our own words beat a union's
    param = param_from_loc(first["loc"])
    if first["type"] == "extra_forbidden":
        instead = INSTEAD.get(str(param))
        said = f": {instead}" if instead else "; decodelab serve does not support it"
        return ApiError(400, f"unrecognised request field: {param}{said}", param=param, code="unrecognized_field")
    if first["type"] == "missing":
        return ApiError(400, f"{param} is required", param=param)
    what = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    return ApiError(400, f"{param}: {what} (got {shown})", param=param)
