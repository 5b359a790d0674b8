"""The generating endpoints' work, shared by /v1/completions, /v1/chat/completions and /v1/responses: read and check
the request (every refusal a 400 naming the field), tokenize it off the event loop, build the engine requests
(best_of candidates, echo's prompt logprobs), submit them to the scheduler, and answer whole or streamed.

A mixin of app.Api, which holds the model, scheduler, limits, metrics and the per-thread tokenizer it uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from typing import TYPE_CHECKING, Any

import anyio
from decodelab.engine.config import ConfigError
from decodelab.engine.decoding.preflight import check_context, check_engine
from decodelab.engine.decoding.requests import Request
from decodelab.engine.experiments.stage_use import inert_notes
from decodelab.engine.results import PromptError
from pydantic import ValidationError
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse

from . import delivery, responses, responses_api
from .dialects import take_settings
from .errors import ApiError, validation_error
from .prompts import prompt_text, tokenize_chat, tokenize_prompt
from .scheduler import Job
from .schemas import ChatRequest, _as_request_error, take_ignored

if TYPE_CHECKING:
    from decodelab.engine.backends.base import Backend
    from decodelab.engine.decoding.token_bytes import TokenBytes

    from .app import Limits
    from .metrics import Metrics
    from .scheduler import Scheduler


class Generation:
    """app.Api's generating endpoints (see the module docstring)."""

    if TYPE_CHECKING:  # Api's attributes, which these methods use
        loaded: Backend
        scheduler: Scheduler
        model_name: str
        limits: Limits
        metrics: Metrics
        max_chars: int | None

        async def _json(self, request: HttpRequest) -> dict: ...

        def _check_model(self, name: str | None) -> None: ...

        @property
        def tokenizer(self) -> Any: ...

        @property
        def token_bytes(self) -> TokenBytes: ...

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
        scored = echo and shape.top is not None  # echo with logprobs: the prompt's own logprobs too
        score_only = wanted == 0 and scored and not req.stream  # the classic scoring request: the prompt alone
        if wanted == 0 and not score_only:
            return self._echo_only(req, chat, shape, ids, echos)
        wanted = 1 if score_only else wanted  # one token decoded beside the prefill, then dropped
        engine_requests = [self._request(req, prompt_ids, wanted, chat, shape, scored) for prompt_ids in ids]
        job = Job(asyncio.get_running_loop(), engine_requests, stream=req.stream,
                  clock=self.metrics.clock(self.model_name, engine_requests))
        self.scheduler.submit(job)
        prompt_tokens = sum(r.prompt_ids.numel() for r in engine_requests)
        echo_rows = [e for e in echos for _ in range(req.n)]
        said = {"X-Decodelab-Ignored": ", ".join(ignored)} if ignored else {}
        inert = inert_notes(engine_requests[0].configs[0]) if engine_requests and engine_requests[0].configs else []
        if inert:  # settings that cannot act with the rest (xtc_threshold without xtc_probability): said, as run does
            said["X-Decodelab-Inert"] = "; ".join(inert).encode("latin-1", "replace").decode("latin-1")
        if asked is not None:
            return await self._respond(request, job, responses_api.ResponseShape(self.model_name, asked, shape),
                                       req.stream, prompt_tokens, said)
        if req.stream:
            return StreamingResponse(delivery.stream(job, shape, echo_rows, req.n, prompt_tokens),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache", **said})
        done: dict[int, list] = {}

        def answer(completions: list) -> dict:
            if score_only:  # max_tokens=0: nothing generated is answered, only the prompt and its logprobs
                completions = [dataclasses.replace(c, text="", token_ids=[], steps=[], stop_reason="max_new_tokens")
                               for c in completions]
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


def size_text(n: int) -> str:
    """Bytes as GiB, or MiB/KiB when small (a budget of 0.001 GiB is not "0.00 GiB")."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n / 1024:.1f} KiB"
