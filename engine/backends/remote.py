"""The remote backend: decoding configs sent to an OpenAI-compatible server (vLLM, llama.cpp, decodelab serve).

Every config is its own streaming request; they run concurrently in a bounded pool. The server is the
engine here: decodelab only sends each server the settings it understands, reports the rest per
pane, and turns the streamed logprobs into the same Completion and TokenStep data as the local engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Container, Sequence

from ..config import ConfigError, DecodingConfig
from ..conversation import Prompt, check_messages
from ..decoding.requests import draw_seeds
from ..results import (Alternative, Completion, GenerationError, PromptError, StepEvent, Timings, TokenStep,
                       json_config)
from .base import Backend, ModelLoadError  # noqa: F401 - ModelLoadError is raised below
from .server_kinds import KINDS, NEUTRAL, SETTINGS, constraint_fields, sampler_fields  # noqa: F401 - KINDS read here

if TYPE_CHECKING:
    import httpx

NAN = float("nan")


class RemoteError(GenerationError):
    """The server refused or failed a request; the message carries the server's own words."""


@dataclass
class RemoteModel(Backend):
    """A model behind an OpenAI-compatible endpoint: the remote backend (same interface as LoadedModel)."""

    spec: Any  # loading.py's ModelSpec (loading.py imports this module, so it is not imported here)
    base_url: str
    model_name: str
    kind: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_parallel: int = 8
    load_seconds: float = 0.0
    tokenizer: object = None
    capabilities = frozenset()  # no branching, no stopping one row, statistics as the server reports them

    @property
    def name(self) -> str:
        return self.model_name

    @property
    def context_length(self) -> int | None:
        return None

    def describe(self) -> str:
        return f"{self.model_name} · {self.kind} server at {self.base_url}"

    def generate(self, prompt: Prompt, configs: Sequence[DecodingConfig], *,
                 on_step: Callable[[StepEvent], None] | None = None, cancel: threading.Event | None = None,
                 top_alternatives: int = 10, prefix_ids: Sequence[int] = (), stop_rows: Container[int] = (),
                 batch_invariant: bool = True, trace_stages: bool = False) -> list[Completion]:
        return generate_remote(self, prompt, configs, on_step=on_step, cancel=cancel,
                               top_alternatives=top_alternatives, prefix_ids=prefix_ids)

    def overridden(self) -> list[str]:
        """The server's own non-neutral defaults that every request overrides (so they cannot leak in)."""
        return [f"{name}={value!r}" for name, value in KINDS[self.kind].defaults.items()]

    def unsupported(self, config: DecodingConfig) -> list[str]:
        """Settings of this config that this kind of server would not apply."""
        fields = KINDS[self.kind].fields
        out = [f"{name}={getattr(config, name)!r}" for name in SETTINGS
               if name not in fields and getattr(config, name) != getattr(NEUTRAL, name) and name != "seed"]
        for name, why in KINDS[self.kind].caveat.items():
            if getattr(config, name) != getattr(NEUTRAL, name):
                out.append(f"{name}={getattr(config, name)!r} applies {why}")
        if config.seed is not None and "seed" not in fields:
            out.append("seed (not reproducible here)")
        return out


OPENAI_HOST = "api.openai.com"


def is_openai_endpoint(base_url: str) -> bool:
    """Only OpenAI's own endpoint (over https) may receive OPENAI_API_KEY."""
    url = httpx_url(base_url)
    return url.scheme == "https" and url.host == OPENAI_HOST


def httpx_url(base_url: str) -> httpx.URL:
    import httpx

    return httpx.URL(base_url)


def api_key_from_env(base_url: str) -> str | None:
    """DECODELAB_API_KEY for any server; OPENAI_API_KEY only for https://api.openai.com, never elsewhere."""
    key = os.environ.get("DECODELAB_API_KEY")
    if key:
        return key
    return os.environ.get("OPENAI_API_KEY") if is_openai_endpoint(base_url) else None


def _headers(api_key: str | None) -> dict:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


# spec: loading.py's ModelSpec (Any: loading.py imports this module, so importing it here would be a cycle)
def connect(spec: Any, api_key: str | None = None, timeout: float = 10.0) -> RemoteModel:
    """Ask the server which model it serves and what kind of server it is. Failures are ModelLoadError."""
    import httpx


    base = spec.path.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    key = api_key if api_key is not None else api_key_from_env(base)
    start = time.perf_counter()
    try:
        response = httpx.get(f"{base}/models", headers=_headers(key), timeout=timeout)
    except httpx.TimeoutException:
        raise ModelLoadError(f"{base} did not answer within {timeout:.0f}s; is the server up?") from None
    except httpx.HTTPError as exc:
        raise ModelLoadError(f"cannot reach {base}: {_why(exc)}. Is the server running, and is the URL right?") from None
    if response.status_code in (401, 403):
        raise ModelLoadError(f"{base} refused the API key (HTTP {response.status_code}); set DECODELAB_API_KEY "
                             "or pass --api-key")
    if response.status_code >= 400:
        raise ModelLoadError(f"{base}/models answered HTTP {response.status_code}: {_server_message(response.text)}")
    try:
        models = response.json().get("data") or []
    except (ValueError, AttributeError):
        raise ModelLoadError(f"{base}/models did not answer with JSON: is this an OpenAI-compatible server?") from None
    names: list[Any] = [m.get("id") for m in models if isinstance(m, dict)]  # the server's JSON
    wanted = getattr(spec, "remote_model", "") or ""
    if wanted and names and wanted not in names:
        raise ModelLoadError(f"{base} serves {', '.join(names)}, not {wanted!r}")
    name = wanted or (names[0] if names else "default")
    kind = getattr(spec, "server_kind", "auto")
    if kind == "auto":
        kind = detect_kind(base, models, key, timeout)
    if spec.chat is None:  # follow the served model: a decodelab server says whether its model chats
        card = next((m for m in models if isinstance(m, dict) and m.get("id") == name), {})
        spec = dataclasses.replace(spec, chat=bool((card.get("decodelab") or {}).get("chat", False)))
    return RemoteModel(spec=spec, base_url=base, model_name=name, kind=kind, api_key=key,
                       load_seconds=time.perf_counter() - start)


def detect_kind(base: str, models: list, key: str | None, timeout: float) -> str:
    """Which kind of server this is, from what /v1/models says and which endpoints it has."""
    cards = [m for m in models if isinstance(m, dict)]
    owner = " ".join(str(m.get("owned_by", "")) for m in cards).lower()
    kind = next((k for k in ("decodelab", "vllm", "llamacpp") if k in owner), None)
    if kind:
        return kind
    if owner.strip() == "me" or any("permissions" in m for m in cards):
        # llama-cpp-python says owned_by "me" whatever --model_alias is; its /extras/tokenize tells for sure
        if _has_tokenize_extra(base, key, timeout):
            return "llama-cpp-python"
    return "openai"


def _has_tokenize_extra(base: str, key: str | None, timeout: float) -> bool:
    import httpx

    root = base[: -len("/v1")] if base.endswith("/v1") else base
    try:
        r = httpx.post(f"{root}/extras/tokenize", json={"input": "a"}, headers=_headers(key), timeout=timeout)
        return r.status_code == 200 and isinstance(r.json().get("tokens"), list)
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _why(exc) -> str:
    text = str(exc) or type(exc).__name__
    return "connection refused" if "refused" in text.lower() or "errno 111" in text.lower() else text


def _server_message(body: str) -> str:
    try:
        data = json.loads(body)
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error)
    except (ValueError, AttributeError):
        return body.strip()[:300] or "(empty body)"


def request_body(remote: RemoteModel, prompt: Prompt, config: DecodingConfig, seed: int, top: int) -> dict:
    """The request for one config: OpenAI's fields, then the server's own sampler fields in its own names and
    spellings (engine/dialects/), neutral values written out since servers' defaults are not; unsupported
    settings left out (and listed by unsupported())."""
    kind = KINDS[remote.kind]
    body = {"model": remote.model_name, "stream": True, "max_tokens": config.max_new_tokens,
            "temperature": config.temperature if config.samples else 0.0, "seed": seed}
    body.update(sampler_fields(remote.kind, config))
    if kind.usage:
        body["stream_options"] = {"include_usage": True}  # so prompt_tokens is known, not guessed
    if remote.kind == "decodelab":
        body["decodelab_stats"] = True  # every token's full statistics, as the local engine gives them
        body.update({name: value for name, value in json_config(config).items()
                     if name in ("json_schema", "regex", "choice", "grammar") and value not in ("", [], ())})
    body.update(constraint_fields(remote.kind, config))
    if config.stop_strings:
        body["stop"] = list(config.stop_strings)
    top = min(top, kind.max_logprobs)
    if remote.spec.chat:
        body["messages"] = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        body["logprobs"], body["top_logprobs"] = True, top
    else:
        body["prompt"] = prompt
        body["logprobs"] = top
    return body


def _steps_from_chunk(choice: dict, chat: bool) -> list[TokenStep]:
    """TokenSteps from one streamed choice (completions or chat logprobs format)."""
    extra = choice.get("decodelab")
    if extra:  # our own server sends the full statistics
        return [TokenStep(token_id=t["id"], text=t["text"], logprob=_f(t["logprob"]),
                          logprob_processed=_f(t["logprob_processed"]), rank=t["rank"], entropy=_f(t["entropy"]),
                          entropy_processed=_f(t["entropy_processed"]),
                          top=tuple(Alternative(a[0], a[1], _f(a[2]), _f(a[3])) for a in t["top"]))
                for t in extra]
    logprobs = choice.get("logprobs") or {}
    if chat:
        items = [(c.get("token", ""), c.get("logprob"), {a.get("token", ""): a.get("logprob")
                                                         for a in c.get("top_logprobs") or []})
                 for c in logprobs.get("content") or []]
        text = (choice.get("delta") or {}).get("content") or ""
    else:
        tokens = logprobs.get("tokens") or []
        items = list(zip(tokens, logprobs.get("token_logprobs") or [None] * len(tokens),
                         logprobs.get("top_logprobs") or [{}] * len(tokens)))
        text = choice.get("text") or ""
    if not items:
        return [TokenStep(-1, text, NAN, NAN, -1, NAN, NAN)] if text else []
    steps = []
    for token, logprob, top in items:
        ranked = sorted(((t, _f(lp)) for t, lp in (top or {}).items()), key=lambda x: -x[1])
        names = [t for t, _ in ranked]
        known = token in names  # beyond the server's top N, only "at least N" is known
        steps.append(TokenStep(token_id=-1, text=token, logprob=_f(logprob), logprob_processed=NAN,
                               rank=names.index(token) if known else len(names), entropy=NAN,
                               entropy_processed=NAN, top=tuple(Alternative(-1, t, lp, NAN) for t, lp in ranked),
                               rank_at_least=not known))
    return steps


def _f(value) -> float:
    return NAN if value is None else float(value)


def _first_stop(text: str, stops) -> int | None:
    hits = [p for p in (text.find(s) for s in stops) if p >= 0]
    return min(hits) if hits else None


def generate_remote(remote: RemoteModel, prompt: Prompt, configs: Sequence[DecodingConfig], *,
                    on_step: Callable[[StepEvent], None] | None = None, cancel: threading.Event | None = None,
                    top_alternatives: int = 10, prefix_ids: Sequence[int] = ()) -> list[Completion]:
    """Run every config as its own streaming request, concurrently; completions in the order of configs."""
    import httpx

    configs = list(configs)
    if not configs:
        raise PromptError("no decoding configs to run: add at least one")
    if prefix_ids:
        raise PromptError("branching from a token needs the local engine; remote servers cannot force tokens")
    if isinstance(prompt, list):
        if not remote.spec.chat:
            raise PromptError("a conversation or system prompt needs the server's chat endpoint: turn chat mode on")
        try:
            prompt = check_messages(prompt, "the prompt")
        except ConfigError as exc:
            raise PromptError(str(exc)) from None
    elif not isinstance(prompt, str):
        raise PromptError(f"the prompt must be text or chat messages, not {type(prompt).__name__}")
    cancel = cancel or threading.Event()
    lock = threading.Lock()
    seeds = draw_seeds(configs, limit=2**31)  # 31 bits: some servers take a signed 32-bit seed
    url = f"{remote.base_url}/{'chat/completions' if remote.spec.chat else 'completions'}"
    client = httpx.Client(timeout=httpx.Timeout(remote.timeout, connect=10.0), headers=_headers(remote.api_key))

    def run(row: int) -> Completion:
        config, seed = configs[row], seeds[row]
        steps: list[TokenStep] = []
        text, reason, error, prompt_tokens = "", None, None, None
        start = time.perf_counter()
        try:
            with client.stream("POST", url, json=request_body(remote, prompt, config, seed, top_alternatives)) as r:
                if r.status_code >= 400:
                    raise RemoteError(f"HTTP {r.status_code} from {remote.base_url}: {_server_message(r.read().decode('utf-8', 'replace'))}")
                for line in r.iter_lines():
                    if cancel.is_set():
                        reason = "cancelled"
                        break  # leaving the with-block closes the stream
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    payload = json.loads(data)
                    if isinstance(payload.get("usage"), dict):  # the last chunk, when the server reports usage
                        prompt_tokens = payload["usage"].get("prompt_tokens", prompt_tokens)
                    choice = (payload.get("choices") or [{}])[0]
                    new = _steps_from_chunk(choice, remote.spec.chat)
                    piece = "".join(s.text for s in new) if new else ""
                    if new:
                        steps.extend(new)
                        text += piece
                        if on_step:
                            with lock:
                                on_step(StepEvent(step=len(steps) - 1, tokens={row: tuple(new)}, finished={},
                                                  texts={row: text}))
                    finish = choice.get("finish_reason")
                    if finish:
                        reason = {"length": "max_new_tokens"}.get(finish, "stop_string" if choice.get("stop_reason")
                                                                  and isinstance(choice.get("stop_reason"), str)
                                                                  else "eos")
                        seed = choice.get("seed") if choice.get("seed") is not None else seed
        except RemoteError as exc:
            error = str(exc)
        except httpx.TimeoutException:
            error = f"{remote.base_url} timed out after {remote.timeout:.0f}s"
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            error = f"the stream from {remote.base_url} broke off: {_why(exc)}"
        cut = _first_stop(text, config.stop_strings)
        if cut is not None:  # some servers stream the stop string before they notice it
            text, reason = text[:cut], "stop_string"
        if reason is None:
            reason = "cancelled" if cancel.is_set() else "error"
            if reason == "error" and error is None:
                error = f"the stream from {remote.base_url} ended before the server finished"
        elapsed = time.perf_counter() - start
        done = Completion(config=config, seed=seed, text=text, token_ids=[s.token_id for s in steps], steps=steps,
                          stop_reason=reason, timings=Timings(None, elapsed, len(steps) / elapsed if elapsed else 0.0),
                          prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
                          extra={"backend": remote.kind, "logprobs": KINDS[remote.kind].logprobs,
                                 "ignored": remote.unsupported(config), "overridden": remote.overridden()})
        if error:
            done.extra["error"] = error + (" (partial text kept)" if text else "")
        if on_step:
            with lock:
                on_step(StepEvent(step=-1, tokens={}, finished={row: reason}, texts={row: text}))
        return done

    try:
        parallel = min(remote.max_parallel, KINDS[remote.kind].max_parallel or remote.max_parallel, len(configs))
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            results = list(pool.map(run, range(len(configs))))
    finally:
        client.close()
    if all(r.stop_reason == "error" and not r.steps for r in results):
        raise RemoteError(results[0].extra["error"])
    return results
