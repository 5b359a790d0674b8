"""GET /metrics: the server's figures in Prometheus' text format, through the prometheus_client library.

Names follow vLLM's (vllm:* becomes decodelab:*, with the same meaning and the model_name label) and, for the
HTTP counts, prometheus-fastapi-instrumentator's http_requests_total{handler, method, status}, which vLLM serves:

    http_requests_total                       counter    requests by route (handler), method and status
    decodelab:prompt_tokens_total             counter    prompt tokens prefilled
    decodelab:generation_tokens_total         counter    tokens generated
    decodelab:request_success_total           counter    finished requests (a prompt of n rows is one) by the
                                                         finished_reason of its first row (stop, length, abort)
    decodelab:time_to_first_token_seconds     histogram  from the request reaching the scheduler to its first token
    decodelab:time_per_output_token_seconds   histogram  a request's mean time between its tokens after the first
                                                         (one observation per request)
    decodelab:e2e_request_latency_seconds     histogram  from the scheduler taking it to its last token
    decodelab:num_requests_running            gauge      requests with rows in the batch
    decodelab:num_requests_waiting            gauge      requests queued for rows
    decodelab:num_batch_rows                  gauge      rows the batch decodes (decodelab's own)
    decodelab:kv_cache_usage_bytes            gauge      key/value cache the batch's rows hold now (decodelab's own)
    decodelab:kv_cache_budget_bytes           gauge      the --kv-budget-gb budget (0: none) (decodelab's own)
    decodelab:kv_cache_usage_perc             gauge      usage over the budget, 0 to 1 (vLLM's kv_cache_usage_perc)

The gauges are read from the scheduler when scraped; everything else is counted as requests go.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.routing import Match

if TYPE_CHECKING:
    from .scheduler import Scheduler

LATENCY = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
           80.0, 160.0, 640.0, 2560.0)
"""vLLM's buckets for time to first token and request latency, in seconds."""
PER_TOKEN = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
"""vLLM's buckets for time per output token."""
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One server's registry: the counters its handlers and jobs feed, and the gauges its schedulers give."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.schedulers: dict[str, Scheduler] = {}
        r = self.registry
        self.http = Counter("http_requests_total", "HTTP requests by route, method and status",
                            ["handler", "method", "status"], registry=r)
        self.prompt_tokens = Counter("decodelab:prompt_tokens", "Prompt tokens prefilled", ["model_name"], registry=r)
        self.generation_tokens = Counter("decodelab:generation_tokens", "Tokens generated", ["model_name"], registry=r)
        self.success = Counter("decodelab:request_success", "Finished requests by finish reason",
                               ["model_name", "finished_reason"], registry=r)
        self.ttft = Histogram("decodelab:time_to_first_token_seconds", "Time to the first token, from the scheduler "
                              "taking the request", ["model_name"], buckets=LATENCY, registry=r)
        self.tpot = Histogram("decodelab:time_per_output_token_seconds", "Mean time between a request's tokens after "
                              "its first", ["model_name"], buckets=PER_TOKEN, registry=r)
        self.e2e = Histogram("decodelab:e2e_request_latency_seconds", "Time from the scheduler taking a request to "
                             "its last token", ["model_name"], buckets=LATENCY, registry=r)
        r.register(_Gauges(self))

    def watch(self, model: str, scheduler: Scheduler) -> None:
        self.schedulers[model] = scheduler

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def clock(self, model: str, requests: Iterable[Any]) -> "RequestClock":
        return RequestClock(self, model, list(requests))


class RequestClock:
    """One job's times and token counts, fed from the scheduler thread (Job's hooks)."""

    def __init__(self, metrics: Metrics, model: str, requests: list[Any]):
        self.metrics, self.model = metrics, model
        self.start = time.perf_counter()
        self.first: float | None = None
        metrics.prompt_tokens.labels(model).inc(sum(r.prompt_ids.numel() for r in requests))

    def step(self, tokens: bool) -> None:
        if tokens and self.first is None:
            self.first = time.perf_counter()
            self.metrics.ttft.labels(self.model).observe(self.first - self.start)

    def done(self, completions: list) -> None:
        """One prompt's completions are in (a job has one request per prompt)."""
        now = time.perf_counter()
        tokens = sum(len(c.token_ids) for c in completions)
        self.metrics.generation_tokens.labels(self.model).inc(tokens)
        if completions:  # once per request (as vLLM counts), by how its first row ended, like its histograms
            reason = {"max_new_tokens": "length", "cancelled": "abort"}.get(completions[0].stop_reason, "stop")
            self.metrics.success.labels(self.model, reason).inc()
        self.metrics.e2e.labels(self.model).observe(now - self.start)
        per_row = tokens / len(completions) if completions else 0
        if self.first is not None and per_row > 1:
            self.metrics.tpot.labels(self.model).observe((now - self.first) / (per_row - 1))


class _Gauges:
    """The gauges, read from each model's scheduler when /metrics is scraped."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        names = ("num_requests_running", "num_requests_waiting", "num_batch_rows", "kv_cache_usage_bytes",
                 "kv_cache_budget_bytes", "kv_cache_usage_perc")
        helps = ("Requests with rows in the batch", "Requests queued for rows", "Rows the batch decodes",
                 "Key/value cache the batch's rows hold now, in bytes", "The key/value cache budget in bytes (0: none)",
                 "Key/value cache in use over the budget (0 to 1; 0 without a budget)")
        families = [GaugeMetricFamily(f"decodelab:{n}", h, labels=["model_name"]) for n, h in zip(names, helps)]
        for model, scheduler in self.metrics.schedulers.items():
            for family, value in zip(families, scheduler.figures()):
                family.add_metric([model], value)
        return families


class HttpCounter:
    """ASGI middleware: counts every HTTP response by route, method and status (404s under their own path)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            self.metrics.http.labels(self._handler(scope), scope.get("method", ""), str(status["code"])).inc()

    def _handler(self, scope: dict) -> str:
        """The route's path template (/v1/models/{name:path}), or "none" for a path no route has (so a scan of
        random paths does not make a label each)."""
        for route in getattr(self.app, "routes", ()):
            match, _ = route.matches(scope)
            if match == Match.FULL or match == Match.PARTIAL:
                return route.path
        return "none"
