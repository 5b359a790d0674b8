"""`decodelab serve`: the local batched engine as an OpenAI-compatible HTTP endpoint.

/v1/models, /v1/completions and /v1/chat/completions, streaming (SSE) or not, with logprobs.
Requests that arrive within a short window with the same prompt run as ONE batched generate_many
call (one prefill, one forward per step), which is exactly what a decodelab client sends. Each
streamed choice also carries a "decodelab" field with the full token statistics, so a decodelab
client sees the same data as it would locally; other clients just ignore it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from engine.config import ConfigError, DecodingConfig
from engine.results import GenerationError, json_number

BATCH_WINDOW_S = 0.02


@dataclass
class Job:
    prompt: str
    config: DecodingConfig
    events: queue.Queue = field(default_factory=queue.Queue)
    gone: threading.Event = field(default_factory=threading.Event)


def config_from_request(body: dict) -> DecodingConfig:
    """A DecodingConfig from OpenAI/vLLM request fields (plus decodelab's own names). ConfigError if bad."""
    temperature = body.get("temperature", 1.0)
    top_k = body.get("top_k", 0)
    stop = body.get("stop") or []
    fields = {
        "name": "request",
        "do_sample": not (isinstance(temperature, (int, float)) and temperature == 0),
        "temperature": temperature if temperature is not None else 1.0,
        "top_k": 0 if top_k in (-1, None) else top_k,
        "top_p": body.get("top_p", 1.0) if body.get("top_p") is not None else 1.0,
        "max_new_tokens": body.get("max_tokens") or body.get("max_completion_tokens") or 128,
        "stop_strings": [stop] if isinstance(stop, str) else stop,
        "seed": body.get("seed"),
    }
    for name, key in (("min_p", "min_p"), ("typical_p", "typical_p"), ("repetition_penalty", "repetition_penalty"),
                      ("frequency_penalty", "frequency_penalty"), ("presence_penalty", "presence_penalty"),
                      ("no_repeat_ngram_size", "no_repeat_ngram_size"), ("num_beams", "num_beams"),
                      ("length_penalty", "length_penalty"), ("min_new_tokens", "min_tokens")):
        if body.get(key) is not None:
            fields[name] = body[key]
    if fields.get("num_beams", 1) > 1:
        fields["do_sample"] = False
    return DecodingConfig(**fields)


class Scheduler:
    """Collects jobs for a short window and runs each group with the same prompt as one batch."""

    def __init__(self, loaded, window: float = BATCH_WINDOW_S, top: int = 20):
        self.loaded, self.window, self.top = loaded, window, top
        self.jobs: queue.Queue = queue.Queue()
        self.batches = 0
        self.thread = threading.Thread(target=self._loop, name="decodelab-scheduler", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Job:
        self.jobs.put(job)
        return job

    def _loop(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.window
            while (left := deadline - time.monotonic()) > 0:
                try:
                    job = self.jobs.get(timeout=left)
                except queue.Empty:
                    break
                if job is None:
                    return
                batch.append(job)
            groups: dict[str, list[Job]] = {}
            for job in batch:
                groups.setdefault(job.prompt, []).append(job)
            for prompt, jobs in groups.items():
                self._run(prompt, jobs)

    def _run(self, prompt: str, jobs: list[Job]) -> None:
        from engine.generation import generate_many

        cancel = threading.Event()
        self.batches += 1

        def on_step(event) -> None:
            for row, steps in event.tokens.items():
                jobs[row].events.put(("tokens", steps))
            if all(job.gone.is_set() for job in jobs):
                cancel.set()  # every client hung up

        try:
            completions = generate_many(self.loaded, prompt, [j.config for j in jobs], on_step=on_step,
                                        cancel=cancel, top_alternatives=self.top)
        except GenerationError as exc:
            for job in jobs:
                job.events.put(("error", str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - report to the clients, keep serving
            for job in jobs:
                job.events.put(("error", f"{type(exc).__name__}: {exc}"))
            return
        for job, completion in zip(jobs, completions):
            job.events.put(("done", completion))

    def stop(self) -> None:
        self.jobs.put(None)


def _token_record(step) -> dict:
    num = json_number
    return {"id": step.token_id, "text": step.text, "logprob": num(step.logprob),
            "logprob_processed": num(step.logprob_processed), "rank": step.rank, "entropy": num(step.entropy),
            "entropy_processed": num(step.entropy_processed),
            "top": [[a.token_id, a.text, num(a.logprob), num(a.logprob_processed)] for a in step.top]}


def _logprobs(steps, top: int, chat: bool, offset: int = 0):
    if chat:
        return {"content": [{"token": s.text, "logprob": s.logprob, "bytes": list(s.text.encode("utf-8")),
                             "top_logprobs": [{"token": a.text, "logprob": a.logprob} for a in s.top[:top]]}
                            for s in steps]}
    offsets, position = [], offset
    for s in steps:
        offsets.append(position)
        position += len(s.text)
    return {"tokens": [s.text for s in steps], "token_logprobs": [s.logprob for s in steps],
            "top_logprobs": [{a.text: a.logprob for a in s.top[:top]} for s in steps], "text_offset": offsets}


FINISH = {"eos": "stop", "stop_string": "stop", "max_new_tokens": "length", "cancelled": "stop"}


def make_handler(loaded, scheduler: Scheduler, model_name: str, api_key: str | None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - quiet by default
            pass

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
            self._json(status, {"error": {"message": message, "type": kind, "code": status}})

        def _authorised(self) -> bool:
            if api_key and self.headers.get("Authorization") != f"Bearer {api_key}":
                self._error(401, "missing or wrong API key", "authentication_error")
                return False
            return True

        def do_GET(self):  # noqa: N802
            if not self._authorised():
                return
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._json(200, {"object": "list", "data": [{"id": model_name, "object": "model",
                                                             "owned_by": "decodelab", "created": 0}]})
            elif self.path.rstrip("/") in ("/health", "/v1/health"):
                self._json(200, {"status": "ok"})
            else:
                self._error(404, f"no such endpoint: {self.path}")

        def do_POST(self):  # noqa: N802
            if not self._authorised():
                return
            chat = self.path.rstrip("/").endswith("/chat/completions")
            if not (chat or self.path.rstrip("/").endswith("/completions")):
                self._error(404, f"no such endpoint: {self.path}")
                return
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the request body must be a JSON object")
                prompt = self._prompt(body, chat)
                config = config_from_request(body)
            except (ValueError, ConfigError) as exc:
                self._error(400, str(exc))
                return
            top = body.get("top_logprobs", 0) if chat and body.get("logprobs") else (
                0 if chat else int(body.get("logprobs") or 0))
            job = scheduler.submit(Job(prompt, config))
            if body.get("stream"):
                self._stream(job, chat, top)
            else:
                self._whole(job, chat, top)

        def _prompt(self, body: dict, chat: bool) -> str:
            if not chat:
                prompt = body.get("prompt", "")
                if isinstance(prompt, list):
                    if len(prompt) != 1 or not isinstance(prompt[0], str):
                        raise ValueError("give one prompt string (batches of prompts are not supported)")
                    prompt = prompt[0]
                if not isinstance(prompt, str):
                    raise ValueError("prompt must be a string")
                return prompt
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
            tokenizer = loaded.tokenizer
            if getattr(tokenizer, "chat_template", None):
                return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))

        def _chunk(self, chat: bool, steps, top: int, finish, completion_id: str, offset: int, seed=None) -> dict:
            text = "".join(s.text for s in steps)
            choice = {"index": 0, "finish_reason": finish, "decodelab": [_token_record(s) for s in steps]}
            if chat:
                choice["delta"] = {"content": text} if text or finish is None else {}
            else:
                choice["text"] = text
            if top and steps:
                choice["logprobs"] = _logprobs(steps, top, chat, offset)
            if seed is not None:
                choice["seed"] = seed
            return {"id": completion_id, "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": int(time.time()), "model": model_name, "choices": [choice]}

        def _stream(self, job: Job, chat: bool, top: int) -> None:
            completion_id = f"cmpl-{uuid.uuid4().hex[:12]}"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            offset = 0
            try:
                while True:
                    kind, payload = job.events.get()
                    if kind == "tokens":
                        chunk = self._chunk(chat, payload, top, None, completion_id, offset)
                        offset += sum(len(s.text) for s in payload)
                    elif kind == "done":
                        chunk = self._chunk(chat, [], top, FINISH.get(payload.stop_reason, "stop"), completion_id,
                                            offset, payload.seed)
                        if payload.stop_reason == "stop_string":
                            chunk["choices"][0]["stop_reason"] = "stop string"
                    else:
                        chunk = {"error": {"message": payload, "type": "server_error"}}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    if kind != "tokens":
                        break
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                job.gone.set()

        def _whole(self, job: Job, chat: bool, top: int) -> None:
            while True:
                kind, payload = job.events.get()
                if kind == "done":
                    break
                if kind == "error":
                    self._error(500, payload, "server_error")
                    return
            c = payload
            choice = {"index": 0, "finish_reason": FINISH.get(c.stop_reason, "stop"), "seed": c.seed}
            if chat:
                choice["message"] = {"role": "assistant", "content": c.text}
            else:
                choice["text"] = c.text
            if top:
                choice["logprobs"] = _logprobs(c.steps, top, chat)
            self._json(200, {"id": f"cmpl-{uuid.uuid4().hex[:12]}",
                             "object": "chat.completion" if chat else "text_completion",
                             "created": int(time.time()), "model": model_name, "choices": [choice],
                             "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": len(c.token_ids),
                                       "total_tokens": c.prompt_tokens + len(c.token_ids)}})

    return Handler


class Server:
    """A running `decodelab serve` (start() in a background thread, or serve_forever() in the foreground)."""

    def __init__(self, loaded, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                 model_name: str | None = None, window: float = BATCH_WINDOW_S):
        self.scheduler = Scheduler(loaded, window=window)
        name = model_name or loaded.name
        self.httpd = ThreadingHTTPServer((host, port), make_handler(loaded, self.scheduler, name, api_key))
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> Server:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="decodelab-serve", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.scheduler.stop()
