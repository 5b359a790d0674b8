"""`decodelab serve`: the local batched engine as an OpenAI-compatible endpoint for teammates' clients."""

from __future__ import annotations

import click

from cli.common import handle_errors, load_with_progress, model_options, model_spec


@click.command()
@model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--serve-key", default=None, envvar="DECODELAB_SERVE_KEY", show_envvar=True,
              help="Require this bearer key from clients.")
@click.option("--name", "served_name", default=None, help="The model name clients see (default: the model's).")
@handle_errors
def serve(host, port, serve_key, served_name, **model):
    """Serve /v1/completions and /v1/chat/completions (streaming, logprobs) from the local engine.

    Requests with the same prompt that arrive together run as one batch, as a decodelab client's
    configs do. Point a client at it with: decodelab --model http://HOST:PORT/v1
    """
    from engine.serve import Server

    spec = model_spec(**model)
    if spec.is_remote:
        raise click.UsageError("serve runs a local model: give a folder, a cached hub id or demo as --model")
    loaded = load_with_progress(spec)
    try:
        server = Server(loaded, host=host, port=port, api_key=serve_key, model_name=served_name)
    except OSError as exc:
        from engine.config import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"serving {loaded.describe()} at {server.url} (Ctrl-C stops)", err=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.httpd.server_close()
        server.scheduler.stop()
