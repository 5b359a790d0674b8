"""`decodelab serve`: the local batched engine as an OpenAI-compatible endpoint for teammates' clients."""

from __future__ import annotations

import click

from .common import handle_errors, load_with_progress, model_options, model_spec, warn


@click.command()
@model_options(serving=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for all; then set --api-key).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--serve-key", default=None, envvar="DECODELAB_SERVE_KEY", show_envvar=True,
              help="The same as --api-key (kept for old scripts).")
@click.option("--name", "served_name", default=None, help="The model name clients see (default: the model's).")
@click.option("--extra-model", "extra_models", multiple=True, metavar="MODEL[,SETTINGS]",
              help="Serve another model beside --model (repeatable), e.g. smollm2,dtype=bfloat16 or "
                   "smollm2,engine=llama.cpp: clients pick it by the request's model field (its name is listed by "
                   "/v1/models and printed at start); requests naming no model go to --model. Each model has its "
                   "own batch.")
@click.option("--max-rows", type=click.IntRange(1, 1024), default=64, show_default=True,
              help="The most rows (requests x n) decoding together; more wait at the next step.")
@click.option("--max-queue", type=click.IntRange(1, 10_000), default=32, show_default=True,
              help="The most requests waiting beyond the free rows; past it clients get 429 with Retry-After.")
@click.option("--max-body-mb", type=click.FloatRange(0.001, 1024), default=4.0, show_default=True,
              help="Request bodies larger than this get 413.")
@click.option("--default-max-tokens", type=click.IntRange(1), default=256, show_default=True,
              help="max_tokens for requests that give none (never past the model's context).")
@click.option("--header-timeout", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Seconds a client has to send its headers, and again its body, before the connection is closed "
                   "(a late body gets 408).")
@click.option("--max-connections", type=click.IntRange(1, 100_000), default=128, show_default=True,
              help="The most open connections; beyond it new ones get 503 at once (keeps file descriptors for "
                   "clients when many connections stall).")
@click.option("--idle-timeout", type=click.FloatRange(0.1), default=5.0, show_default=True,
              help="Seconds an idle kept-alive connection stays open.")
@click.option("--batch-invariant/--no-batch-invariant", default=True, show_default=True,
              help="Decode at bucket sizes (8, 16, 32, ...) so a seeded request gives the same tokens alone and "
                   "under load. --no-batch-invariant runs a lone request as a batch of 1: on a CPU about 1.5x "
                   "faster for one request at a time (BENCHMARKS.md), but a seeded request may then give other "
                   "tokens under load than alone.")
@click.option("--prefill-chunk", type=click.IntRange(0, 1_000_000), default=256, show_default=True,
              help="A longer prompt arriving while other requests decode is prefilled this many tokens per decode "
                   "step, so their streams keep flowing; 0 prefills it in one go.")
@click.option("--kv-budget-gb", "kv_budget", default="auto", show_default=True, metavar="GB|auto|off",
              help="The most memory the batch's key/value cache may take: a request that would pass it waits for "
                   "rows to finish, one that could not fit even alone gets 400. auto: 90% of the GPU memory free "
                   "after loading, or 80% of the available RAM on a CPU.")
@handle_errors
def serve(host, port, serve_key, served_name, extra_models, max_rows, max_queue, max_body_mb, default_max_tokens, header_timeout,
          max_connections, idle_timeout, batch_invariant, prefill_chunk, kv_budget, **model):
    """Serve /v1/completions and /v1/chat/completions (streaming, logprobs, n) from the local engine.

    Requests from all clients, with different prompts, decode together in one batch: a new request
    joins at the next step and a finished one returns at once. Point a client at it with:
    decodelab --model http://HOST:PORT/v1
    """
    from decodelab.server import Limits, Server, exposure_warning

    api_key = model.pop("api_key", None)
    if serve_key and api_key and serve_key != api_key:
        raise click.UsageError("--api-key and --serve-key (or their environment variables) name two different keys: "
                               "give one")
    serve_key = serve_key or api_key  # the server's own key: requests without it get 401
    spec = model_spec(**model)
    if spec.is_remote:
        raise click.UsageError("serve runs a local model: give a folder, a cached hub id or demo as --model")
    warning = exposure_warning(host, serve_key)
    if warning:
        click.echo(warning, err=True)
    budget_text = str(kv_budget).strip().lower()
    if budget_text not in ("auto", "off"):
        try:
            gigabytes = float(budget_text)
        except ValueError:
            raise click.BadParameter(f"{kv_budget!r}: give a number of GB, auto or off", param_hint="--kv-budget-gb")
        if not gigabytes > 0:
            raise click.BadParameter("it must be above 0 (off turns the budget off)", param_hint="--kv-budget-gb")
    from decodelab.engine.backends.pool import ModelPool, load_key, served_name_of, spec_from_text
    from decodelab.server.runner import auto_kv_budget

    pool = ModelPool()
    loaded = load_with_progress(spec, loader=pool.get)

    def budget_of(model):
        return None if budget_text == "off" else auto_kv_budget(model) if budget_text == "auto" \
            else int(float(budget_text) * 2**30)

    budget = budget_of(loaded)
    extra, names = [], {served_name or loaded.name}
    for text in extra_models:
        other_spec = spec_from_text(text, spec)
        if other_spec.is_remote:
            raise click.UsageError(f"--extra-model {text}: serve runs local models, not a server's")
        if load_key(other_spec) in pool.models:
            raise click.UsageError(f"--extra-model {text} is a model already served: give other load settings")
        other = load_with_progress(other_spec, loader=pool.get)
        name = served_name_of(other_spec, names)
        names.add(name)
        extra.append((other, name, budget_of(other)))
    limits = Limits(max_body=int(max_body_mb * 2**20), default_max_tokens=default_max_tokens, max_rows=max_rows,
                    batch_invariant=batch_invariant, prefill_chunk=prefill_chunk, kv_budget=budget)
    try:
        server = Server(loaded, host=host, port=port, api_key=serve_key, model_name=served_name, limits=limits,
                        max_queue=max_queue, header_timeout=header_timeout, idle_timeout=idle_timeout,
                        max_connections=max_connections, extra=extra)
    except OSError as exc:
        from decodelab.engine.config import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    from decodelab.server.app import size_text

    per_token = loaded.runner.kv_bytes_per_token
    if budget and per_token:
        kv = (f"key/value cache budget {size_text(budget)}, {budget // per_token:,} tokens at "
              f"{per_token / 1024:.1f} KiB each on the {loaded.runner.engine} engine; ")
        context = loaded.context_length
        if context and budget // per_token < context:
            warn(f"the key/value cache budget holds {budget // per_token:,} tokens, less than the model's context "
                 f"of {context:,}: longer requests will be refused (raise --kv-budget-gb)")
    elif budget:
        kv = "no key/value cache budget: this model does not say how large its cache is per token; "
    else:
        kv = ""
    click.echo(f"serving {loaded.describe()} at {server.url} ({kv}Ctrl-C stops)", err=True)
    for other, name, _budget in extra:
        click.echo(f"  and {other.describe()} as model {name!r}", err=True)
    server.run()
    click.echo("stopped", err=True)
