"""Shared CLI pieces: model options, --set parsing, preset resolution, and error-to-exit-code handling."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click
from decodelab.engine.config import SETTING, ConfigError, DecodingConfig

DEFAULT_PRESETS = ("greedy", "balanced", "creative")


class FieldHintCommand(click.Command):
    """A command that answers an unknown option named like a setting (--max-new-tokens) with its --set form."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            field = exc.option_name.lstrip("-").replace("-", "_")
            if field in SETTING and any(p.name == "sets" for p in self.params):
                exc.message = (f"{exc.message.rstrip('.')}: decoding settings go through --set, "
                               f"e.g. --set {field}=...")
            raise


class CommandGroup(click.Group):
    """A group whose command list shows each command's whole first sentence, in a reading order."""

    command_class = FieldHintCommand

    ORDER = ("run", "presets", "ab", "sweep", "bench", "serve", "models")

    def list_commands(self, ctx):
        names = super().list_commands(ctx)
        rank = {n: i for i, n in enumerate(self.ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))  # never cut with "..."
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


SERVE_KEY_HELP = ("The key clients must send (Authorization: Bearer KEY), as vLLM's and llama.cpp's servers take it; "
                  "without it, anyone who can reach the port can use the model.")


def model_options(func=None, *, serving: bool = False):
    """--model and the load options people use, shared by the TUI launcher, run, bench and serve (serving: --api-key
    is then the server's own key, as in vLLM and llama.cpp, not the key for a remote model)."""
    if func is None:
        return lambda f: model_options(f, serving=serving)
    key_help = SERVE_KEY_HELP if serving else "Remote servers (--model http://host:port/v1): the API key. Never saved anywhere."
    options = [
        click.option("--model", "-m", "model", default=None, metavar="PATH|ID|FILE.gguf|smollm2|demo",
                     help="A local model folder, a hub id already in the local cache, a .gguf file, 'smollm2' "
                          "(SmolLM2-135M-Instruct, the default when installed; $DECODELAB_MODEL overrides) or "
                          "'demo' (the bundled tiny model). `decodelab models` lists what is here."),
        click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]), default="auto",
                     show_default=True, help="Weights dtype; auto = bfloat16/float16 on CUDA, float32 on CPU."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where to run; CUDA placement goes through accelerate's device_map."),
        click.option("--quantization", "-q", type=click.Choice(["none", "8bit", "4bit"]), default="none",
                     show_default=True, help="bitsandbytes quantization."),
        click.option("--quant-type", type=click.Choice(["nf4", "fp4"]), default="nf4", show_default=True,
                     help="4-bit only: the 4-bit number format."),
        click.option("--engine", type=click.Choice(["transformers", "llama.cpp"]), default="transformers",
                     show_default=True,
                     help="What runs the model. llama.cpp: a GGUF file stays quantized and runs in llama.cpp "
                          "in this process (faster, less memory); transformers: any model (a GGUF file is "
                          "de-quantized once). README: choosing an engine."),
        click.option("--chat/--no-chat", default=None,
                     help="Wrap the prompt in the model's chat template (default: on for smollm2, else off)."),
        click.option("--trust-remote-code", is_flag=True, help="Run Python code shipped with the model (off)."),
        click.option("--profile", type=click.Path(dir_okay=False), default=None,
                     help="A saved model profile (TOML); other model options are ignored."),
        click.option("--api-key", default=None, envvar="DECODELAB_API_KEY", show_envvar=True, help=key_help),
        click.option("--server-kind", type=click.Choice(["auto", "decodelab", "vllm", "llamacpp", "llama-cpp-python", "openai"]),
                     default="auto", show_default=True, help="Remote servers: which settings the server understands."),
        click.option("--remote-model", default="", help="Remote servers: the served model to use (default: the first)."),
        click.option("--threads", default="auto", show_default=True, metavar="N|auto",
                     help="CPU threads to decode with. auto: all cores but one (kept for the UI) and those the "
                          "load average says are busy; on a shared box a thread per core made SmolLM2 3-9x slower."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def model_spec(model, dtype, device, quantization, quant_type, chat, trust_remote_code, profile, api_key=None,
               server_kind="auto", remote_model="", threads="auto", engine="transformers"):
    """The ModelSpec the options describe (the API key is kept out of it, so it is never saved). It also sets
    the CPU threads the model will run with (--threads), which are the process's, not the model's."""
    from decodelab.engine.backends.loading import ModelSpec, set_threads

    set_threads(threads)

    if profile:
        from decodelab.engine.library.profiles import load_model_profile

        return load_model_profile(profile)
    if model is None:
        from decodelab.engine.backends.loading import default_model_path

        model = default_model_path()
        if model == "demo" and not os.environ.get("DECODELAB_MODEL"):
            from decodelab.engine.backends.gguf import SMOLLM2_HINT

            click.echo(f"decodelab: using the tiny demo model; {SMOLLM2_HINT}", err=True)
    if chat is None and not str(model).startswith(("http://", "https://")):
        chat = model == "smollm2"  # a remote server's chat mode follows its model (backends/remote.py)
    return ModelSpec(path=model, dtype=dtype, device=device, quantization=quantization, quant_type=quant_type,
                     chat=chat, trust_remote_code=trust_remote_code, server_kind=server_kind,
                     remote_model=remote_model, engine=engine)


def parse_set(items: tuple[str, ...]) -> dict:
    """--set field=value pairs, read by the same parser as the TUI editor (engine/fieldtext.py)."""
    from decodelab.engine.fieldtext import parse_assignment

    return dict(parse_assignment(item, "--set") for item in items)


def resolve_configs(presets: tuple[str, ...], sets: tuple[str, ...], seed: int | None,
                    default: tuple[str, ...] = ()) -> list[DecodingConfig]:
    from decodelab.engine.library.presets import find_preset

    changes = parse_set(sets)
    names = presets or default
    configs = [find_preset(name) for name in names] or [DecodingConfig(name="custom")]
    if not names and "do_sample" not in changes and changes.get("temperature", 1) != 0:
        sampling = [f for f in changes if SETTING[f].warper]
        if sampling:  # an ad-hoc config that names sampling settings means to sample (HF would ignore them)
            changes["do_sample"] = True
    else:
        sampling = []
    if changes:
        out = []
        for name, config in zip(names or ["custom"], configs):
            try:
                out.append(config.replace(**changes))
            except ConfigError as exc:
                raise ConfigError(f"preset {name!r} with --set: {exc}", field=exc.field) from None
        configs = out
    if sampling:  # said once the settings are known to be valid: a bad value gets its one error line alone
        warn(f"no preset given: do_sample=true is set, since {', '.join(sampling)} "
             f"{'acts' if len(sampling) == 1 else 'act'} only when sampling (add --set do_sample=false for greedy)")
    if seed is not None:
        configs = [c.replace(seed=seed) for c in configs]
    return configs


def warn(message: str) -> None:
    click.echo(f"decodelab: warning: {message}", err=True)


def read_prompt(prompt: str | None, prompt_file: str | None, required: bool = True) -> str | None:
    """The prompt from --prompt, --prompt-file or a pipe; an empty one is allowed but warned about."""
    if prompt is not None and prompt_file is not None:
        raise click.UsageError("give --prompt or --prompt-file, not both")
    if prompt_file is not None:
        try:
            text, where = Path(prompt_file).read_text(encoding="utf-8"), f"prompt file {prompt_file}"
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read prompt file {prompt_file}: {getattr(exc, 'strerror', None) or exc}")
    elif prompt is None and required:
        if sys.stdin.isatty():
            raise click.UsageError("give a prompt with --prompt TEXT or --prompt-file FILE (or pipe it on stdin)")
        text, where = sys.stdin.read(), "the prompt read from stdin"
    else:
        text, where = prompt, "--prompt"
    if required and text is not None and not text.strip():
        warn(f"{where} is empty, so the model writes from nothing; give a prompt with --prompt TEXT, "
             "--prompt-file FILE or on stdin")
    return text


def read_conversation(prompt: str | None, prompt_file: str | None, system: str | None, messages_file: str | None):
    """The run's prompt: one text, or chat messages when there is a system prompt or a messages file."""
    from decodelab.engine.conversation import build, load_messages

    if messages_file is None:
        text = read_prompt(prompt, prompt_file)
        return build(text, system) if system else text
    earlier = load_messages(messages_file)
    if system and earlier[0]["role"] == "system":
        raise ConfigError(f"{messages_file} has its own system message; leave out --system or that message")
    user = read_prompt(prompt, prompt_file, required=False)
    if user is not None and earlier[-1]["role"] == "user":
        warn(f"{messages_file} ends with a user message, so --prompt makes two user messages in a row; "
             "leave one out if that is not what you meant")
    if user is None and earlier[-1]["role"] == "user" and len(earlier) == 1 and not system:
        return earlier[0]["content"]
    return build(user, system, earlier) if (user is not None or system) else earlier


def completion_record(prompt, completion, top: int, model: str | None = None) -> dict:
    """A completion as JSON, with the pane's whole conversation when the prompt was one (messages + its reply), and
    its model when the panes' models differ."""
    from decodelab.engine.conversation import with_reply
    from decodelab.engine.results import completion_to_dict

    record = completion_to_dict(completion, top)
    if model is not None:
        record["model"] = model
    if any(step.stages for step in completion.steps):  # run --stages: which settings mattered
        from decodelab.engine.experiments.stage_use import report_dict

        record["stage_report"] = report_dict(completion)
    if isinstance(prompt, list):
        record["messages"] = with_reply(prompt, completion.text)
    return record


def split_pane_models(presets: tuple[str, ...]) -> tuple[tuple[str, ...], list[str | None]]:
    """-p NAME@MODEL: the preset names, and each pane's own model text (None: the run's --model)."""
    names, models = [], []
    for item in presets:
        name, at, pane_model = item.partition("@")
        if at and not pane_model.strip():
            raise click.BadParameter(f"{item!r}: give the pane's model after @, e.g. greedy@smollm2,dtype=bfloat16",
                                     param_hint="--preset")
        names.append(name if at else item)
        models.append(pane_model.strip() if at else None)
    return tuple(names), models


def load_with_progress(spec, quiet: bool = False, api_key: str | None = None, loader=None):
    from decodelab.engine.backends.loading import load_model

    loader = loader or load_model
    tty = sys.stderr.isatty()

    def progress(stage: str, fraction):
        if not quiet and tty:
            pct = f" {fraction * 100:3.0f}%" if fraction is not None else ""
            click.echo(f"\r\033[K[{pct.strip() or '...'}] {stage}", err=True, nl=False)

    loaded = loader(spec, progress, api_key=api_key)
    if not quiet:
        click.echo(f"{chr(13) + chr(27) + '[K' if tty else ''}loaded {loaded.describe()} in {loaded.load_seconds:.1f}s",
                   err=True)
    return loaded


def fail(message: str, code: int):
    click.echo(f"decodelab: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func):
    """User mistakes exit 2 with one line; runtime failures exit 1; never a traceback for either."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from decodelab.engine.config import ConfigError

        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), 2)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - mapped below, re-raised if unknown
            from decodelab.engine.backends.loading import ModelLoadError
            from decodelab.engine.results import GenerationError, PromptError

            if isinstance(exc, PromptError):
                fail(str(exc), 2)
            if isinstance(exc, (ModelLoadError, GenerationError)):
                fail(str(exc), 1)
            raise
    return wrapper
