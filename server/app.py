"""The Starlette app: /v1/models, /v1/completions, /v1/chat/completions, /v1/responses (OpenAI-compatible),
/metrics (Prometheus), /health.

Every error is JSON in OpenAI's shape, and every request's body is read (up to the size limit)
before the answer, so a kept-alive connection stays in step. Tokenizing runs in a worker thread,
never on the scheduler's; the scheduler thread only decodes.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import anyio
from decodelab.engine.backends.base import Backend
from decodelab.engine.decoding.requests import Request
from decodelab.engine.decoding.preflight import check_context, check_engine
from decodelab.engine.decoding.token_bytes import TokenBytes
from decodelab.engine.config import ConfigError
from decodelab.engine.results import PromptError
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import delivery, responses, responses_api
from .errors import ApiError, validation_error
from .metrics import CONTENT_TYPE as METRICS_TYPE, HttpCounter, Metrics
from .prompts import check_token_ids, prompt_text, tokenize_chat, tokenize_prompt
from .scheduler import Job, Scheduler
from .dialects import take_settings
from .schemas import (ChatRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest, _as_request_error,
                      take_ignored)


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


class Api:
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

    async def create_response(self, request: HttpRequest, data: dict | None = None) -> Response:
        """OpenAI's Responses API: the chat endpoint's work, answered as a response object (responses_api.py)."""
        data = data if data is not None else await self._json(request)
        chat, asked, ignored = responses_api.translate(data)
        return await self._generate(request, ChatRequest, chat, asked=asked, ignored=ignored)

    async def _generate(self, request: HttpRequest, kind, data: dict | None = None,
                        asked: responses_api.Asked | None = None, ignored: list[str] | None = None):
        """A completion, chat completion, or (asked: what a Responses request said) a response."""
        data = data if data is not None else await self._json(request)
        ignored = (ignored or []) + take_ignored(data)
        settings, sent = take_settings(data)  # every decodelab setting, in any stack's name (dialects.py)
        try:
            req = kind.model_validate(data).with_settings(settings, sent)
        except ValidationError as exc:
            raise validation_error(exc) from None
        chat = kind is ChatRequest
        self._check_model(req.model)
        shape = self._shape(req, chat)
        prompts = [req.messages] if chat else req.prompts()
        if len(prompts) * req.candidates() > self.limits.max_rows:
            many = f"best_of={req.best_of}" if req.candidates() > req.n else f"n={req.n}"
            raise ApiError(400, f"{len(prompts)} prompts x {many} is over {self.limits.max_rows} rows",
                           param="best_of" if req.candidates() > req.n else "n")
        if len(prompts) * (req.num_beams or 1) > self.limits.max_rows:  # each beam is a row of the cache
            raise ApiError(400, f"{len(prompts)} prompts x num_beams={req.num_beams} is over this server's "
                           f"{self.limits.max_rows} rows: lower num_beams", param="num_beams")
        self._check_length(prompts, chat)
        echo = not chat and req.echo
        ids, echos = await anyio.to_thread.run_sync(self._tokenize, prompts, chat, echo)  # off loop and scheduler
        wanted = req.wanted_tokens()
        if wanted == 0:
            return self._echo_only(req, chat, shape, ids, echos)
        scored = echo and shape.top is not None  # echo with logprobs: the prompt's own logprobs too
        engine_requests = [self._request(req, prompt_ids, wanted, chat, shape, scored) for prompt_ids in ids]
        job = Job(asyncio.get_running_loop(), engine_requests, stream=req.stream,
                  clock=self.metrics.clock(self.model_name, engine_requests))
        self.scheduler.submit(job)
        prompt_tokens = sum(r.prompt_ids.numel() for r in engine_requests)
        echo_rows = [e for e in echos for _ in range(req.n)]
        said = {"X-Decodelab-Ignored": ", ".join(ignored)} if ignored else {}
        if asked is not None:
            return await self._respond(request, job, responses_api.ResponseShape(self.model_name, asked, shape),
                                       req.stream, prompt_tokens, said)
        if req.stream:
            return StreamingResponse(delivery.stream(job, shape, echo_rows, req.n, prompt_tokens),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache", **said})
        done: dict[int, list] = {}

        def answer(completions: list) -> dict:
            body = responses.whole(shape, self._best(req, completions), echo_rows, prompt_tokens,
                                   self._prompt_logprobs(engine_requests, req.n, shape) if scored else ())
            body["usage"]["completion_tokens"] = sum(len(c.token_ids) for c in completions)  # every candidate
            body["usage"]["total_tokens"] = prompt_tokens + body["usage"]["completion_tokens"]
            return body

        try:
            completions = await delivery.wait(job, request, done)
        except delivery.HalfClosed:  # answer all the same, checking with spaces that the client is still there
            return StreamingResponse(delivery.held(job, done, answer), media_type="application/json", headers=said)
        return JSONResponse(answer(completions), headers=said)

    async def _respond(self, request: HttpRequest, job: Job, form: responses_api.ResponseShape, stream: bool,
                       prompt_tokens: int, said: dict) -> Response:
        if stream:
            return StreamingResponse(form.stream(job, prompt_tokens), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", **said})
        done: dict[int, list] = {}
        answer = lambda completions: form.whole(completions[0], prompt_tokens)  # noqa: E731 - one row
        try:
            completions = await delivery.wait(job, request, done)
        except delivery.HalfClosed:
            return StreamingResponse(delivery.held(job, done, answer), media_type="application/json", headers=said)
        return JSONResponse(answer(completions), headers=said)

    @staticmethod
    def _best(req, completions: list) -> list:
        """best_of: of each prompt's candidates, the n with the highest summed logprob (vLLM's and OpenAI's rule),
        best first; otherwise the completions as they are."""
        per = req.candidates()
        if per == req.n:
            return completions
        out = []
        for start in range(0, len(completions), per):
            ranked = sorted(completions[start: start + per], key=lambda c: -sum(s.logprob for s in c.steps))
            out += ranked[: req.n]
        return out

    def _prompt_logprobs(self, engine_requests: list, n: int, shape) -> list[dict]:
        """Each choice's echoed-prompt logprobs (one per prompt, repeated for its n choices)."""
        out = []
        for r in engine_requests:
            ids = r.prompt_ids.tolist()
            first = self.tokenizer.decode(ids[:1], skip_special_tokens=True) if ids else ""
            out += [responses.prompt_logprobs(first, r.prompt_steps, shape.top or 0)] * n
        return out

    def _echo_only(self, req, chat: bool, shape, ids, echos) -> JSONResponse:
        """max_tokens=0: only echo=true (non-streaming) makes sense of it; it gives the prompt back."""
        if chat or not req.echo or req.stream:
            raise ApiError(400, "max_tokens=0 generates nothing: ask for at least 1 token (or echo=true "
                           "without streaming, to get the prompt back)", param="max_tokens")
        body = responses.whole(shape, [], [], sum(len(i) for i in ids))
        body["choices"] = [{"index": i * req.n + j, "text": e, "finish_reason": "length", "logprobs": None}
                           for i, e in enumerate(echos) for j in range(req.n)]
        return JSONResponse(body)

    def _shape(self, req, chat: bool) -> responses.Shape:
        if req.stream_options is not None and not req.stream:
            raise ApiError(400, "stream_options is only allowed with stream=true", param="stream_options")
        if req.n_probs is not None:  # llama.cpp's way of asking for logprobs
            asked = req.top_logprobs if chat else req.logprobs
            if asked is not None and asked is not False and asked != req.n_probs:
                raise ApiError(400, f"n_probs={req.n_probs} and {'top_logprobs' if chat else 'logprobs'}={asked} "
                               "ask for different numbers of alternatives: send one of them", param="n_probs")
            if chat:
                req.logprobs, req.top_logprobs = True, req.n_probs
            else:
                req.logprobs = req.n_probs
        if chat:
            if req.top_logprobs is not None and not req.logprobs:
                raise ApiError(400, "top_logprobs needs logprobs=true", param="top_logprobs")
            top = (req.top_logprobs or 0) if req.logprobs else None
        else:
            if req.echo and req.logprobs is not None and req.stream:
                raise ApiError(400, "echo with logprobs is answered whole, not streamed: set stream=false (or drop "
                               "logprobs)", param="echo")
            if (req.best_of or 1) > 1:
                if req.stream:
                    raise ApiError(400, "best_of > 1 cannot be streamed (the best candidates are known only at the end): "
                                   "set stream=false, or best_of=1", param="best_of")
                if req.best_of < req.n:
                    raise ApiError(400, f"best_of={req.best_of} must be at least n={req.n}: best_of is how many "
                                   "candidates the n returned are chosen from", param="best_of")
                if (req.num_beams or 1) > 1:
                    raise ApiError(400, "best_of > 1 with num_beams > 1 is not supported: beam search returns one "
                                   "sequence", param="best_of")
            top = req.logprobs
        if (req.num_beams or 1) > 1 and req.n > 1:
            raise ApiError(400, "n > 1 with num_beams > 1 is not supported: beam search returns one sequence",
                           param="n")
        include = bool(req.stream_options and req.stream_options.include_usage)
        return responses.Shape(chat=chat, model=self.model_name, top=top, stats=req.decodelab_stats,
                               include_usage=include, bytes_of=self.token_bytes if chat and top is not None else None,
                               processed=req.post_sampling_probs)

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

    def _check_length(self, prompts, chat: bool) -> None:
        """A prompt too long for the context in characters alone is refused at once, not tokenized for seconds."""
        for p in prompts:
            chars = sum(len(m.text()) for m in p) if chat else (len(p) if isinstance(p, str) else 0)
            if self.max_chars is not None and chars > self.max_chars:
                raise ApiError(400, f"the prompt has {chars} characters: more than this model's context of "
                               f"{self.loaded.context_length} tokens can hold; shorten it",
                               param="messages" if chat else "prompt")

    def _tokenize(self, prompts, chat: bool, echo: bool) -> tuple[list, list[str]]:
        """Token ids of every prompt, and its text to echo ("" unless echo)."""
        encode = tokenize_chat if chat else tokenize_prompt
        tok = self.tokenizer
        try:
            return ([encode(self.loaded, tok, p) for p in prompts],
                    [prompt_text(tok, p) if echo else "" for p in prompts])
        except PromptError as exc:
            raise ApiError(400, str(exc), param="messages" if chat else "prompt") from None

    def _request(self, req, prompt_ids, wanted: int | None, chat: bool, shape, scored: bool = False) -> Request:
        length = prompt_ids.numel()
        context = self.loaded.context_length
        max_new = wanted if wanted is not None else min(self.limits.default_max_tokens,
                                                        (context - length) if context else 10**9)
        if not context and max_new > self.limits.max_tokens:
            raise ApiError(400, f"max_tokens={max_new} is over this server's limit of {self.limits.max_tokens}",
                           param="max_tokens")
        try:
            check_context(self.loaded, length, max(max_new, 1))
        except PromptError as exc:
            param = "max_tokens" if context and length < context else ("messages" if chat else "prompt")
            raise ApiError(400, str(exc).replace("max_new_tokens", "max_tokens"), param=param) from None
        config = req.config(max_new)
        try:
            check_engine(self.loaded, [config])  # beams and guidance need the transformers engine
        except PromptError as exc:
            raise ApiError(400, str(exc), param="num_beams" if config.num_beams > 1 else "guidance_scale") from None
        self._check_tokens(config, req)
        self._check_memory(length, max_new, req)
        rows = req.candidates()
        seeds = [(req.seed + j) % 2**64 if req.seed is not None else secrets.randbelow(2**32) for j in range(rows)]
        return Request(prompt_ids, [config] * rows, top=shape.top or 0, seeds=seeds,
                       prompt_top=(shape.top or 0) if scored else None)

    def _check_memory(self, length: int, max_new: int, req) -> None:
        """A request whose key/value cache alone would pass this server's budget can never run: 400 now."""
        batch = self.scheduler.batch
        if not batch.kv_per_token:
            return
        assert batch.kv_budget is not None  # kv_per_token is set only under a budget (decoding/loop.py)
        rows = req.candidates() * (req.num_beams or 1)
        need = batch.kv_bytes(rows, length + max_new, max_new)
        if need > batch.kv_budget:
            padded = batch.padded_rows(rows)
            pad = f", padded to {padded} rows" if padded != rows else ""
            asked = "" if req.wanted_tokens() is not None else f" (max_tokens was not given: this server's default " \
                f"is {max_new})"
            raise ApiError(400, f"this request needs {size_text(need)} of key/value cache ({rows} row(s) x "
                           f"{length + max_new} tokens{pad}, on the {batch.runner.engine} engine), over this server's "
                           f"budget of {size_text(batch.kv_budget)} (--kv-budget-gb){asked}: lower max_tokens or n, "
                           "or shorten the prompt", param="max_tokens")

    def _check_tokens(self, config, req) -> None:
        """Settings that name tokens (logit_bias ids or texts, banned strings, DRY breakers) resolved against this
        model's vocabulary now, so a bad one is a 400 naming its field, not a failed batch."""
        from decodelab.engine.decoding.preflight import check_constraint, check_tokens

        try:
            check_tokens(self.loaded, config)
            check_constraint(self.loaded, config)
        except ConfigError as exc:  # vocab.py names the field; the 400 names it as the client sent it
            message, param = _as_request_error(exc, req._sent)
            raise ApiError(400, message, param=param) from None


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


def size_text(n: int) -> str:
    """Bytes as GiB, or MiB/KiB when small (a budget of 0.001 GiB is not "0.00 GiB")."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n / 1024:.1f} KiB"


def _piece(data: bytes):
    """A token's piece as llama.cpp's /tokenize gives it: text, or its bytes when they are not whole UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)
