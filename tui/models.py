"""The ModelShelf (the loaded models: the app's, the panes' own, loads, frees, chat mode, the model bar's words)
and the Reference part (shift+r: the agreement figures against a reference pane).

Each distinct (model, load settings) is loaded once, in a worker, into the shelf's ModelPool and shared by its
panes; a pane without a model of its own runs on the app's model (m). A model no pane uses any more is unloaded.
Workers post messages to the App, which hands them back here. With a reference pane, every finished run measures
each other pane on the same prompt against it (engine/experiments/agreement.py) in a worker: KL per token (the
"kl" heatmap), top-1 agreement, where greedy outputs part, perplexities.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import TYPE_CHECKING, Any

from decodelab.engine.backends.pool import ModelPool, load_key, spec_label, spec_text
from decodelab.engine.config import ConfigError
from decodelab.engine.decoding.token_bytes import TokenBytes
from decodelab.engine.session import Session

from .messages import (AgreementReady, LoadFailed, LoadProgress, ModelLoaded, PaneModelFailed, PaneModelLoaded,
                       PaneModelProgress)
from .parts import Part

if TYPE_CHECKING:
    from decodelab.engine.backends.loading import ModelSpec

    from .app import DecodelabApp
    from .state import PaneState
    from .widgets.pane import Pane

PANE_SPEC_HELP = ("A folder, cached hub id, FILE.gguf, smollm2 or demo, then load settings after commas: "
                  "dtype=bfloat16, quantization=4bit or 8bit (quant_type=nf4|fp4), engine=llama.cpp, device=cpu, "
                  "chat=false. e.g. smollm2,dtype=bfloat16")


class ModelShelf(Part):
    """The loaded models and their loads (every load goes through the engine's Session)."""

    def __init__(self, app: DecodelabApp, spec: ModelSpec, loaded: Any = None, api_key: str | None = None) -> None:
        super().__init__(app)
        self.spec = spec
        """The app's model as asked for (m changes it; it becomes the loaded one's once that is in)."""
        self.loaded = loaded
        """The app's model, loaded (None until then): every pane without a model of its own runs on it."""
        self.api_key = api_key
        """For remote servers only; never written to a session."""
        self.loading = False
        """A load of the app's model is under way (ctrl+r says so instead of 'no model')."""
        self.switched_model = False
        """The model being loaded was picked with m (not given on the command line)."""
        self.pool = ModelPool()
        """The panes' own models (shift+m), each loaded once."""
        self.session = Session(self.pool)
        """The one way into the engine: every run and every pane model's load goes through it."""
        self.loading_models: set = set()
        """The load keys of pane models being loaded."""
        self.models_loaded: list[str] = []
        """Pane models loaded while others still load (said in one note when the last is in)."""
        self.chat_views: dict = {}
        """(id of a pane model, chat mode) -> that model in that mode: one object, so its panes share a batch."""
        self.token_bytes: TokenBytes | None = None
        """token id -> bytes for the app's model's tokenizer (shows tokens that hold part of a character)."""
        self.pane_token_bytes: dict = {}
        """id of a pane model's tokenizer -> its TokenBytes."""

    # -- which model a pane runs on -----------------------------------------------------------------------
    def backend_for(self, state: PaneState) -> Any:
        """The model a pane runs on: its own (from the pool), else the app's; None when its own is not loaded.
        Chat mode is the app's (ctrl+t), for each model that has a chat template."""
        spec = state.model_spec
        if self.loaded is None:
            return None
        if spec is None or load_key(spec) == load_key(self.loaded.spec):
            return self.loaded
        backend = self.pool.models.get(load_key(spec))
        if backend is None:
            return None
        chat = bool(self.loaded.spec.chat) and self.has_template(backend)
        if backend.spec.is_remote or backend.spec.chat == chat:
            return backend
        key = (id(backend), chat)  # one object per model and chat mode: a run groups panes by it, so two panes on
        if key not in self.chat_views:  # one model share its batch
            self.chat_views[key] = dataclasses.replace(backend, spec=dataclasses.replace(backend.spec, chat=chat))
        return self.chat_views[key]

    def pane_label(self, state: PaneState) -> str | None:
        """The pane's model for its title when the panes' models differ (None when they all share one)."""
        if self.loaded is None:
            return None
        specs = {load_key(s.model_spec or self.loaded.spec) for s in self.ws.panes}
        if len(specs) < 2:
            return None
        return spec_label(state.model_spec or self.loaded.spec)

    def token_bytes_for(self, state: PaneState) -> TokenBytes | None:
        """token id -> bytes in the pane's model's tokenizer (the app's TokenBytes for the app's model)."""
        backend = self.backend_for(state)
        if backend is None or backend.spec.path == self.loaded.spec.path or not backend.can("tokenizer"):
            return self.token_bytes
        if id(backend.tokenizer) not in self.pane_token_bytes:
            self.pane_token_bytes[id(backend.tokenizer)] = TokenBytes(backend.tokenizer)
        return self.pane_token_bytes[id(backend.tokenizer)]

    def written_by_other(self, state: PaneState) -> str | None:
        """The model that wrote the pane's output when it is not the one the pane runs on now (its tokens then
        mean nothing to the pane's model); None otherwise."""
        backend = self.backend_for(state)
        if state.model is None or backend is None or state.model == self.label(backend):
            return None
        return state.model

    def label(self, backend: Any) -> str:
        return spec_label(backend.spec)

    def has_template(self, backend: Any) -> bool:
        """Whether the model can take a conversation: it has a chat template, or it is a server that applies one."""
        return not backend.can("tokenizer") or bool(getattr(backend.tokenizer, "chat_template", None))

    def bar_text(self) -> str:
        """The model bar: the app's model, threads, chat mode, system prompt, the panes' other models."""
        import torch

        chat = " · chat" if self.loaded.spec.chat else ""
        if self.ws.system_prompt:
            system = " ".join(self.ws.system_prompt.split())
            chat += f" · system: {system[:40]}{'…' if len(system) > 40 else ''}"
        device = getattr(self.loaded, "device", None)
        count = torch.get_num_threads()
        threads = f" · {count} thread{'s' if count > 1 else ''}" if getattr(device, "type", "") == "cpu" else ""
        live = {load_key(st.model_spec) for st in self.ws.panes if st.model_spec is not None}
        others = list(dict.fromkeys(self.label(b) for k, b in self.pool.models.items() if k in live))
        kept = list(dict.fromkeys(self.label(b) for k, b in self.pool.models.items() if k not in live))
        also = f" · panes also on {', '.join(others)}" if others else ""
        if kept:  # a removed pane's model stays loaded while u can bring the pane back
            also += f" · {', '.join(kept)} kept for u"
        return f"{self.loaded.describe()}{threads}{chat}{also}"

    # -- the app's model (m) ---------------------------------------------------------------------------------
    def load(self, spec: ModelSpec) -> None:
        """Load the app's model in a worker (the one loaded keeps working until the new one is in)."""
        self.loading = True
        rows = max(1, len(self.ws.panes))
        self.app.run_worker(partial(self._load_worker, spec, rows), thread=True, exclusive=True, group="load")

    def _load_worker(self, spec: ModelSpec, rows: int) -> None:
        from decodelab.engine.backends.loading import ModelLoadError, load_model
        from decodelab.engine.backends.pool import check_fits

        post = self.app.post_message
        try:
            check_fits(spec, rows=rows)  # refused, with the numbers, if it cannot fit
            loaded = load_model(spec, lambda stage, f: post(LoadProgress(stage, f)), api_key=self.api_key)
        except ModelLoadError as exc:
            post(LoadFailed(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - the app must survive any load failure
            post(LoadFailed(f"{type(exc).__name__}: {exc}"))
            return
        post(ModelLoaded(loaded))

    def loaded_now(self, loaded: Any) -> None:
        """The app's model is in (ModelLoaded)."""
        self.loading = False
        self.loaded = loaded
        if self.switched_model:
            self.switched_model = False
            self._chat_for_new_model()
        self.spec = self.loaded.spec
        tokenizer = getattr(self.loaded, "tokenizer", None)
        self.token_bytes = TokenBytes(tokenizer) if tokenizer is not None else None

    def load_failed(self) -> str | None:
        """The app's model did not load (LoadFailed): the one it failed to load, when an older one stays."""
        self.loading = False
        if self.loaded is None:
            return None
        failed, self.spec = self.spec.path, self.loaded.spec
        return failed

    def load_path(self, path: str) -> None:
        """m: load another model as the app's."""
        try:
            # chat follows the model: on for SmolLM2 (as on the command line), and off once it is in if the
            # new model has no chat template (_chat_for_new_model)
            self.spec = dataclasses.replace(self.spec, path=path, chat=self.spec.chat or path == "smollm2")
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        self.switched_model = True
        self.app.load(self.spec)

    def change_model(self) -> None:
        """m: pick from the list `decodelab models` prints, or type a model."""
        from .screens.model_picker import ModelPicker

        self.push_screen(ModelPicker(self.spec.path), lambda path: self.load_path(path) if path else None)

    def toggle_chat(self) -> None:
        """ctrl+t: the chat template on or off (off only for a model that has one)."""
        if self.loaded is None:
            return
        if not self.loaded.spec.chat and not self.has_template(self.loaded):
            self.notify(f"{self.loaded.name} has no chat template, so the prompt is sent as plain text.",
                        title="Chat template stays off", severity="warning", timeout=8)
            return
        self._set_chat(not self.loaded.spec.chat)
        self.app.update_model_bar()
        self.notify(f"Chat template {'on' if self.spec.chat else 'off'}" + (
            "" if self.spec.chat else ": a plain prompt goes as text; a conversation or system prompt still goes "
            "through the template (shift+n starts anew)"))

    def _set_chat(self, chat: bool) -> None:
        spec = dataclasses.replace(self.loaded.spec, chat=chat)
        self.loaded = dataclasses.replace(self.loaded, spec=spec)
        self.spec = spec

    def _chat_for_new_model(self) -> None:
        """A model picked with m keeps chat mode only if it has a chat template (demo after smollm2 has none)."""
        loaded = self.loaded
        if loaded.spec.chat and not self.has_template(loaded):
            self._set_chat(False)
            self.notify(f"{loaded.name} has no chat template: chat mode is off, the prompt goes as plain text.",
                        title="Chat template off", timeout=8)

    # -- a pane's own model (shift+m) --------------------------------------------------------------------------
    def pane_model(self, pane: Pane) -> None:
        """shift+m: put this pane on a model of its own (or back on the app's with an empty answer)."""
        from .screens.ask import AskText

        if self.loaded is None:
            self.notify("No model is loaded yet (press m to load one).", severity="warning")
            return
        current = spec_text(pane.state.model_spec) if pane.state.model_spec else ""

        def check(text: str) -> str | None:
            from decodelab.engine.backends.pool import spec_from_text

            try:
                spec_from_text(text.strip(), self.loaded.spec) if text.strip() else None
            except ConfigError as exc:
                return str(exc)
            return None

        self.push_screen(AskText(f"Pane {pane.number}'s model (empty: the app's, {self.label(self.loaded)})",
                                 current, check, detail=PANE_SPEC_HELP),
                         lambda text: self.set_pane_model(pane, text))

    def set_pane_model(self, pane: Pane, text: str | None) -> None:
        from decodelab.engine.backends.pool import spec_from_text

        if text is None:
            return
        if self.running and pane.state.running:
            self.notify("This pane is running: wait for it, or Esc to cancel, then change its model.",
                        severity="warning")
            return
        if not text.strip():
            pane.state.model_spec = None
            self.models_changed(f"Pane {pane.number} is back on {self.label(self.loaded)}.")
            return
        try:
            spec = spec_from_text(text.strip(), self.loaded.spec)
        except ConfigError as exc:
            self.notify(str(exc), title="Model not set", severity="error", timeout=10)
            return
        if load_key(spec) == load_key(self.loaded.spec):
            pane.state.model_spec = None
            self.models_changed(f"Pane {pane.number} runs on the app's model, {self.label(self.loaded)}.")
            return
        pane.state.model_spec = spec
        if load_key(spec) in self.pool.models:
            self.models_changed(f"Pane {pane.number} runs on {self.label(self.pool.models[load_key(spec)])}.")
            return
        self.load_pane_model(spec)

    def load_pane_model(self, spec: ModelSpec) -> None:
        if load_key(spec) in self.loading_models:
            return
        self.loading_models.add(load_key(spec))
        states = self.ws.panes
        rows = sum(s.model_spec == spec for s in states) or 1
        tokens = max((s.config.max_new_tokens for s in states), default=256) + 1024
        self.app.run_worker(partial(self._pane_model_worker, spec, rows, tokens), thread=True, group="pane-model")
        self.later(self.app.panes_part.refresh)

    def _pane_model_worker(self, spec: ModelSpec, rows: int, tokens: int) -> None:
        from decodelab.engine.backends.base import ModelLoadError

        post = self.app.post_message
        try:
            self.session.model(spec, lambda stage, f: post(PaneModelProgress(spec, stage, f)),
                               api_key=self.api_key, rows=rows, tokens=tokens)
        except ModelLoadError as exc:
            post(PaneModelFailed(spec, str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - the app must survive any load failure
            post(PaneModelFailed(spec, f"{type(exc).__name__}: {exc}"))
            return
        post(PaneModelLoaded(spec, spec_label(spec)))

    def pane_model_loaded(self, message: PaneModelLoaded) -> None:
        self.loading_models.discard(load_key(message.spec))
        self.models_loaded.append(message.label)
        if self.loading_models:  # one note once every model asked for is in
            return
        names, self.models_loaded = self.models_loaded, []
        self.app.compare.measure_if_missing()
        if self.app.run_at_start and self.loaded is not None:  # the command line's prompt runs once all are in
            self.models_changed()
            self.app.run_initial_prompt()
            return
        one = len(names) == 1
        self.models_changed(f"{', '.join(names)} {'is' if one else 'are'} loaded: {'its' if one else 'their'} "
                            f"panes run on {'it' if one else 'them'} (ctrl+r).")

    def pane_model_failed(self, message: PaneModelFailed) -> None:
        self.loading_models.discard(load_key(message.spec))
        if not self.loading_models and self.app.run_at_start and self.loaded is not None:
            self.later(self.app.run_initial_prompt)
        for state in self.ws.panes:
            if state.model_spec == message.spec:
                state.model_spec = None  # back on the app's model: the pane stays usable
        self.models_changed()
        self.notify(f"{load_failure(spec_label(message.spec), message.error)}\nIts panes stay on the app's model.",
                    title="Model not loaded", severity="error", timeout=15)

    def models_changed(self, note: str | None = None) -> None:
        """Pane models changed: unload the unused, redraw titles and the bar, say what happened."""
        states = self.ws.panes + self.ws.removed_states()  # u may bring a pane back
        used = {load_key(s.model_spec) for s in states if s.model_spec is not None}
        if self.pool.keep(used | self.loading_models):
            self.chat_views.clear()  # no view may keep an unloaded model alive
        self.ws.drop_reference_if_gone()
        if self.loaded is not None:
            self.app.update_model_bar()
        self.app.panes_part.refresh()
        if note:
            self.notify(note, timeout=5)

    def missing_models(self, panes: list[Pane]) -> str | None:
        """Why the panes cannot run yet: a pane model still loading (loaded now if it had been unloaded)."""
        waiting = []
        for pane in panes:
            spec = pane.state.model_spec
            if spec is not None and self.backend_for(pane.state) is None:
                if load_key(spec) not in self.loading_models:
                    self.load_pane_model(spec)  # e.g. a pane brought back with u, or opened from a session
                waiting.append(f"pane {pane.number} ({spec_label(spec)})")
        if waiting:
            return f"Loading the model of {', '.join(dict.fromkeys(waiting))}: press ctrl+r once it is in."
        return None


class Reference(Part):
    """shift+r: the reference pane (Workspace.reference) and the figures of every other pane against it."""

    def toggle(self, pane: Pane) -> None:
        """shift+r: measure every other pane against this one (again: no reference)."""
        if self.ws.reference is pane.state:
            if self.ws.clear_reference():
                self.app.panes_part.update_legend()
            self.app.panes_part.refresh()
            self.notify("No reference pane: the agreement figures are off.", timeout=4)
            return
        self.ws.reference = pane.state
        self.notify(f"Pane {pane.number} is the reference: each other pane on the same prompt is measured against "
                    "it after every run (h: the kl heatmap).", timeout=6)
        self.measure()

    def measure(self) -> None:
        """Start measuring every pane against the reference (after a run, or when the reference is set)."""
        ref = self.ws.reference
        if ref is None or ref.completion is None or self.running:
            self.app.panes_part.refresh()
            return
        ref_backend = self.shelf.backend_for(ref)
        jobs = []
        for state in self.ws.panes:
            state.agreement, state.kl_levels = None, None
            if state is ref or state.completion is None or state.prompt != ref.prompt:
                continue
            backend = self.shelf.backend_for(state)
            if backend is not None and ref_backend is not None:
                jobs.append((state, backend))
        if jobs:
            self.app.run_worker(partial(self._worker, ref, ref_backend, jobs), thread=True, exclusive=True,
                                group="agreement")
        self.app.panes_part.refresh()

    def measure_if_missing(self) -> None:
        """A model came in: measure against the reference again where a pane has output but no figures (an opened
        or restored session keeps the reference, not its figures, which need the models)."""
        ref = self.ws.reference
        if ref is None or self.shelf.loaded is None or self.shelf.loading_models:
            return
        if any(s is not ref and s.completion is not None and s.agreement is None for s in self.ws.panes):
            self.measure()

    def _worker(self, ref: PaneState, ref_backend: Any, jobs: list) -> None:
        from decodelab.engine.experiments.agreement import compare, scorable

        results = []
        for state, backend in jobs:
            if not (scorable(ref_backend) and scorable(backend)):
                results.append((state, None, None, "a remote server gives no full distribution"))
                continue
            try:
                figures = compare(ref_backend, ref.completion, backend, state.completion, ref.prompt,
                                  kl_on_pane=True)
            except Exception as exc:  # noqa: BLE001 - a measurement must never take the app down
                results.append((state, None, None, f"{type(exc).__name__}: {exc}"))
                continue
            results.append((state, figures, figures.kl_on_pane, None))
        self.app.post_message(AgreementReady(ref, results))

    def ready(self, message: AgreementReady) -> None:
        if message.reference is not self.ws.reference:
            return  # the reference changed meanwhile
        for state, figures, levels, problem in message.results:
            if state.completion is None:
                continue
            state.agreement = figures if figures is not None else problem
            state.kl_levels = levels
        self.app.panes_part.refresh()


def agreement_text(figures: Any) -> str:
    """The pane's figures against the reference pane (★), for its status line ("★KL 0.012/tok · top-1 92% · …")."""
    if figures is None:
        return ""
    if isinstance(figures, str):
        return f"★ {figures}"
    parts = []
    if figures.kl_mean is not None:
        parts.append(f"★KL {figures.kl_mean:.3f}/tok")
        parts.append(f"top-1 {figures.top1_agreement:.0%}" if figures.top1_agreement is not None else "")
        parts.append(f"parts @{figures.first_divergence}" if figures.first_divergence is not None else "")
    else:
        parts.append("★other tokenizer")
    ppl = figures.perplexity_on_reference
    if ppl is not None and math.isfinite(ppl):
        parts.append(f"ppl on ★ {ppl:.1f}")
    return " · ".join(p for p in parts if p)


def load_failure(spec: str, error: object) -> str:
    """ "Could not load SPEC: why", said once: the loader's own message often begins the same way (it read "Could not
    load [bold]x: could not load [bold]x: ...")."""
    text = str(error)
    if text.lower().startswith("could not load"):
        return text[0].upper() + text[1:]
    return f"Could not load {spec}: {text}"
