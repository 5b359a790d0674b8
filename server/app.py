"""The Starlette app: /v1/models, /v1/completions, /v1/chat/completions, /v1/responses (OpenAI-compatible),
/metrics (Prometheus), /health.

Every error is JSON in OpenAI's shape, and every request's body is read (up to the size limit)
before the answer, so a kept-alive connection stays in step. Tokenizing runs in a worker thread,
never on the scheduler's; the scheduler thread only decodes. The generating endpoints' work is generation.py's.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import anyio
from decodelab.engine.backends.base import Backend
from decodelab.engine.decoding.token_bytes import TokenBytes
from decodelab.engine.results import PromptError
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import ApiError, validation_error
from .generation import Generation, size_text  # noqa: F401 - size_text: the CLI reads it from here
from .metrics import CONTENT_TYPE as METRICS_TYPE, HttpCounter, Metrics
from .prompts import check_token_ids, tokenize_chat
from .scheduler import Scheduler
from .schemas import ChatRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest


SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A JSON escape of a UTF-16 surrogate: only bodies holding one are checked for a lone surrogate."""


DISCARD_LIMIT = 64 * 2**20
"""A body over the limit is still read (and dropped) up to this size, so its sender sees the 413."""


@dataclass
class Limits:
    max_body: int = 4 * 2**20
    """Request bodies larger than this get 413."""
    default_max_tokens: int = 256
    """max_tokens when a request gives none (never past the model's context)."""
    max_rows: int = 64
    """The most rows (prompts x n) one request may ask for."""
    max_tokens: int = 32768
    """The most tokens one row may ask for when the model does not say how long its context is."""
    request_timeout: float = 10.0
    """Seconds a client has to send its whole body (the headers have the same time, in runner.py)."""
    batch_invariant: bool = True
    """Decode at bucket sizes (8, 16, 32, ...) so a seeded request gives the same tokens alone and under load;
    off, a lone request runs as a batch of 1 (faster on a CPU, where 8 rows cost more than 1)."""
    prefill_chunk: int = 256
    """A longer prompt arriving while rows decode is prefilled this many tokens per step (0: in one go)."""
    kv_budget: int | None = None
    """Bytes the batch's key/value cache may reach; a request that would pass it waits, one that could not fit
    even alone gets 400 (None: no limit)."""


class Api(Generation):
    """The endpoints, bound to one model, scheduler and key."""

    def __init__(self, loaded: Backend, scheduler: Scheduler, model_name: str, api_key: str | None, limits: Limits,
                 metrics: Metrics | None = None):
        self.loaded, self.scheduler, self.model_name = loaded, scheduler, model_name
        self.api_key, self.limits = api_key, limits
        self.metrics = metrics or Metrics()
        """The server's /metrics registry (one for all its models; each model's scheduler is watched)."""
        self.metrics.watch(model_name, scheduler)
        self.local = threading.local()  # one tokenizer copy per worker thread: Rust tokenizers are not shared
        longest = max((len(t) for t in loaded.tokenizer.get_vocab()), default=64)
        context = loaded.context_length
        self.max_chars = context * longest * 4 if context else None
        """Text longer than this cannot fit the context whatever it holds: refused before tokenizing."""

    def app(self) -> Starlette:
        routes = [Route(p, self.models, methods=["GET"]) for p in ("/v1/models", "/models")]
        routes += [Route(p, self.model, methods=["GET"]) for p in ("/v1/models/{name:path}", "/models/{name:path}")]
        routes += [Route(p, self.health, methods=["GET"]) for p in ("/health", "/v1/health")]
        routes += [Route("/metrics", self.prometheus, methods=["GET"])]
        routes += [Route(p, self.completions, methods=["POST"]) for p in ("/v1/completions", "/completions")]
        routes += [Route(p, self.chat, methods=["POST"]) for p in ("/v1/chat/completions", "/chat/completions")]
        routes += [Route(p, self.create_response, methods=["POST"]) for p in ("/v1/responses", "/responses")]
        routes += [Route(p, self.tokenize, methods=["POST"]) for p in ("/tokenize", "/v1/tokenize")]
        routes += [Route(p, self.detokenize, methods=["POST"]) for p in ("/detokenize", "/v1/detokenize")]
        # each handler takes its own exception type, which starlette's handler type cannot say: Callable[...]
        handlers: dict[type[Exception], Callable[..., Awaitable[JSONResponse]]] = {
            ApiError: self.api_error, HTTPException: self.http_error, Exception: self.crash}
        app = Starlette(routes=routes, exception_handlers=handlers)
        return HttpCounter(app, self.metrics)  # type: ignore[return-value]  # an ASGI app, as Starlette is

    # -- errors: always JSON, always after the body was read --------------------------------------

    async def _drain(self, request: HttpRequest) -> bool:
        """Read what is left of the body (up to the limit); False when the connection must close."""
        seen = 0
        try:
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > self.limits.max_body:
                    return False
        except Exception:  # noqa: BLE001 - already consumed, or the client is gone
            return True
        return True

    async def _discard(self, request: HttpRequest) -> None:
        """Read and drop the rest of a too-large body (up to DISCARD_LIMIT, within the body timeout) before the 413,
        so the client has finished sending when the connection closes: closing on unread data resets the
        connection, and the client sees that instead of the 413 (3 in 10 fresh connections did)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > DISCARD_LIMIT:
            return  # too much to wait for: close at once
        seen = 0
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                while seen <= DISCARD_LIMIT:
                    message = await request.receive()
                    seen += len(message.get("body", b""))
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
        except (TimeoutError, Exception):  # noqa: BLE001 - a slow or vanished client: close all the same
            return

    async def api_error(self, request: HttpRequest, exc: ApiError) -> JSONResponse:
        response = exc.response()
        if exc.status == 413:
            await self._discard(request)
        if exc.status in (408, 413) or not await self._drain(request):  # a late body is not waited for again
            response.headers["Connection"] = "close"
        return response

    async def http_error(self, request: HttpRequest, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error = ApiError(404, f"no such endpoint: {request.method} {request.url.path}", code="not_found")
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            error = ApiError(405, f"{request.method} is not allowed on {request.url.path}: use {allowed}",
                             code="method_not_allowed", headers={"Allow": allowed})
        else:
            error = ApiError(exc.status_code, str(exc.detail))
        return await self.api_error(request, error)

    async def crash(self, request: HttpRequest, exc: Exception) -> JSONResponse:
        return await self.api_error(request, ApiError(500, f"internal error: {type(exc).__name__}: {exc}"))

    # -- requests -----------------------------------------------------------------------------------

    def _authorise(self, request: HttpRequest) -> None:
        if not self.api_key:
            return
        given = request.headers.get("authorization")
        keys = [given[7:] if given[:7].lower() == "bearer " else ""] if given is not None else []
        if "x-api-key" in request.headers:  # the header some clients send instead (Anthropic's, many proxies')
            keys.append(request.headers["x-api-key"])
        # every key sent must be the key (constant time); none sent is as wrong as a wrong one
        if not keys or not all([hmac.compare_digest(k.encode(), self.api_key.encode()) for k in keys]):
            raise ApiError(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY' (or 'X-Api-Key: KEY')",
                           code="invalid_api_key")

    async def _json(self, request: HttpRequest) -> dict:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.limits.max_body:
            raise ApiError(413, f"the request body is {int(declared)} bytes; the limit is {self.limits.max_body}",
                           code="request_too_large")
        body = bytearray()
        try:
            async with asyncio.timeout(self.limits.request_timeout):  # a trickled or short body is not waited on
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > self.limits.max_body:
                        raise ApiError(413, f"the request body is over the {self.limits.max_body}-byte limit",
                                       code="request_too_large")
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {self.limits.request_timeout:g} s "
                           "(is Content-Length right?)", code="request_timeout", headers={"Connection": "close"}) \
                from None
        self._authorise(request)
        if not body.strip():
            raise ApiError(400, "the request body is empty: send a JSON object (e.g. {\"prompt\": \"Hello\"})",
                           code="invalid_json")
        try:
            data = json.loads(body)
            if SURROGATE_ESCAPE.search(body):  # JSON may spell a lone surrogate (\ud800): not text any tokenizer takes
                json.dumps(data, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            raise ApiError(400, "the request body is nested too deeply to read: no request needs that",
                           code="invalid_json") from None
        except UnicodeEncodeError as exc:  # before ValueError, its base class
            raise ApiError(400, f"the request holds a lone surrogate ({ascii(exc.object[exc.start:exc.end])}), which "
                           "is not valid Unicode: send UTF-8 text", code="invalid_json") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def _model_card(self) -> dict:
        chat = bool(getattr(self.loaded.spec, "chat", False))  # decodelab's client follows it (issue 21 item 13)
        return {"id": self.model_name, "object": "model", "created": 0, "owned_by": "decodelab",
                "decodelab": {"chat": chat}}

    async def models(self, request: HttpRequest) -> JSONResponse:
        self._authorise(request)
        return JSONResponse({"object": "list", "data": [self._model_card()]})

    async def model(self, request: HttpRequest) -> JSONResponse:
        self._authorise(request)
        self._check_model(request.path_params["name"])
        return JSONResponse(self._model_card())

    async def health(self, request: HttpRequest) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def prometheus(self, request: HttpRequest) -> Response:
        """Prometheus' text format (metrics.py); open without the API key, as vLLM's /metrics is, so a scraper
        needs no secret: it shows counts and times, never a prompt or an output."""
        return Response(self.metrics.text(), media_type=METRICS_TYPE)

    def _check_model(self, name: str | None) -> None:
        if name is not None and name != self.model_name:
            raise ApiError(404, f"the model {name!r} does not exist here; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")

    async def completions(self, request: HttpRequest) -> Response:
        return await self._generate(request, CompletionRequest)

    async def chat(self, request: HttpRequest) -> Response:
        return await self._generate(request, ChatRequest)

    async def tokenize(self, request: HttpRequest, data: dict | None = None) -> JSONResponse:
        """llama.cpp's /tokenize ({"content"}, add_special false by default, with_pieces) and vLLM's ({"prompt"} with
        add_special_tokens true by default, or {"messages"} through the chat template), answered in both shapes."""
        try:
            req = TokenizeRequest.model_validate(data if data is not None else await self._json(request))
        except ValidationError as exc:
            raise validation_error(exc) from None
        self._check_model(req.model)
        ids = await anyio.to_thread.run_sync(self._tokens_of, req)
        tokens: list = ids
        if req.with_pieces:
            pieces = [self.token_bytes(t) or b"" for t in ids]
            tokens = [{"id": t, "piece": _piece(p)} for t, p in zip(ids, pieces)]
        return JSONResponse({"tokens": tokens, "count": len(ids), "max_model_len": self.loaded.context_length})

    def _tokens_of(self, req) -> list[int]:
        tok = self.tokenizer
        text = req.text()
        if text is None:
            try:
                return tokenize_chat(self.loaded, tok, req.messages).tolist()
            except PromptError as exc:
                raise ApiError(400, str(exc), param="messages") from None
        special = req.add_special if req.add_special is not None else (
            req.add_special_tokens if req.add_special_tokens is not None else req.prompt is not None)
        if self.max_chars is not None and len(text) > self.max_chars:
            raise ApiError(400, f"the text is {len(text)} characters, more than this model's context can hold",
                           param="content" if req.content is not None else "prompt")
        return list(tok(text, add_special_tokens=special)["input_ids"]) if text else []

    async def detokenize(self, request: HttpRequest, data: dict | None = None) -> JSONResponse:
        """llama.cpp's and vLLM's /detokenize: {"tokens": [ids]} -> {"content": text, "prompt": text}."""
        try:
            req = DetokenizeRequest.model_validate(data if data is not None else await self._json(request))
        except ValidationError as exc:
            raise validation_error(exc) from None
        self._check_model(req.model)
        try:
            check_token_ids(self.loaded, req.tokens)
        except PromptError as exc:
            raise ApiError(400, str(exc), param="tokens") from None
        text = await anyio.to_thread.run_sync(lambda: self.tokenizer.decode(
            req.tokens, skip_special_tokens=False, clean_up_tokenization_spaces=False))
        return JSONResponse({"content": text, "prompt": text})

    @property
    def tokenizer(self) -> Any:
        """This thread's own copy of the model's tokenizer (the scheduler thread decodes with the original)."""
        tok = getattr(self.local, "tokenizer", None)
        if tok is None:
            tok = self.local.tokenizer = copy.deepcopy(self.loaded.tokenizer)
        return tok

    @property
    def token_bytes(self) -> TokenBytes:
        """This thread's token id -> bytes map (over its own tokenizer copy), for logprobs' `bytes`."""
        lookup = getattr(self.local, "token_bytes", None)
        if lookup is None:
            lookup = self.local.token_bytes = TokenBytes(self.tokenizer)
        return lookup

class Router(Api):
    """Several models behind one address (serve --extra-model): a request goes to the model its `model` field names,
    the first model when it names none; /v1/models lists them all. Each model has its own scheduler and batch."""

    def __init__(self, apis: list[Api]):
        first = apis[0]
        super().__init__(first.loaded, first.scheduler, first.model_name, first.api_key, first.limits, first.metrics)
        self.apis = {api.model_name: api for api in apis}

    def _pick(self, data: dict) -> Api:
        name = data.get("model")
        if name is None:
            return self.apis[self.model_name]
        if not isinstance(name, str):
            raise ApiError(400, f"model must be a string (one of {', '.join(map(repr, self.apis))})", param="model")
        if name not in self.apis:
            raise ApiError(404, f"the model {name!r} does not exist here; this server serves "
                           f"{', '.join(map(repr, self.apis))}", param="model", code="model_not_found")
        return self.apis[name]

    async def models(self, request: HttpRequest) -> JSONResponse:
        self._authorise(request)
        return JSONResponse({"object": "list", "data": [api._model_card() for api in self.apis.values()]})

    async def model(self, request: HttpRequest) -> JSONResponse:
        self._authorise(request)
        return JSONResponse(self._pick({"model": request.path_params["name"]})._model_card())

    async def completions(self, request: HttpRequest) -> Response:
        data = await self._json(request)
        return await self._pick(data)._generate(request, CompletionRequest, data)

    async def chat(self, request: HttpRequest) -> Response:
        data = await self._json(request)
        return await self._pick(data)._generate(request, ChatRequest, data)

    async def create_response(self, request: HttpRequest, data: dict | None = None) -> Response:
        data = await self._json(request)
        return await Api.create_response(self._pick(data), request, data)

    async def tokenize(self, request: HttpRequest, data: dict | None = None) -> JSONResponse:
        data = await self._json(request)
        return await Api.tokenize(self._pick(data), request, data)

    async def detokenize(self, request: HttpRequest, data: dict | None = None) -> JSONResponse:
        data = await self._json(request)
        return await Api.detokenize(self._pick(data), request, data)


def _piece(data: bytes):
    """A token's piece as llama.cpp's /tokenize gives it: text, or its bytes when they are not whole UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)
