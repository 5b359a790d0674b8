"""Panes on models of their own (shift+m) and the agreement figures against a reference pane (shift+r).

Each distinct (model, load settings) is loaded once, in a worker, into the app's ModelPool and shared by its panes;
a pane without a model of its own runs on the app's model (m). A model no pane uses any more is unloaded. With a
reference pane, every finished run measures each other pane on the same prompt against it (engine/experiments/
agreement.py) in a worker: KL per token (the "kl" heatmap), top-1 agreement, where greedy outputs part, perplexities.
"""

from __future__ import annotations

import dataclasses
import math

from textual import work
from textual.widgets import Static

from .messages import AgreementReady, PaneModelFailed, PaneModelLoaded, PaneModelProgress


class ModelActions:
    """The App's side of pane models and agreement (mixed into DecodelabApp)."""

    # -- which model a pane runs on -------------------------------------------------------------------
    def backend_for(self, state):
        """The model a pane runs on: its own (from the pool), else the app's; None when its own is not loaded.
        Chat mode is the app's (ctrl+t), for each model that has a chat template."""
        from decodelab.engine.backends.pool import load_key

        spec = state.model_spec
        if self.loaded is None:
            return None
        if spec is None or load_key(spec) == load_key(self.loaded.spec):
            return self.loaded
        backend = self.pool.models.get(load_key(spec))
        if backend is None:
            return None
        chat = bool(self.loaded.spec.chat) and (not backend.can("tokenizer")
                                                or bool(getattr(backend.tokenizer, "chat_template", None)))
        if backend.spec.is_remote or backend.spec.chat == chat:
            return backend
        key = (id(backend), chat)  # one object per model and chat mode: a run groups panes by it, so two panes on
        if key not in self.chat_views:  # one model share its batch
            self.chat_views[key] = dataclasses.replace(backend, spec=dataclasses.replace(backend.spec, chat=chat))
        return self.chat_views[key]

    def pane_label(self, state) -> str | None:
        """The pane's model for its title when the panes' models differ (None when they all share one)."""
        from decodelab.engine.backends.pool import load_key, spec_label

        if self.loaded is None:
            return None
        specs = {load_key(p.state.model_spec or self.loaded.spec) for p in self.panes()}
        if len(specs) < 2:
            return None
        return spec_label(state.model_spec or self.loaded.spec)

    def token_bytes_for(self, state):
        """token id -> bytes in the pane's model's tokenizer (the app's TokenBytes for the app's model)."""
        backend = self.backend_for(state)
        if backend is None or backend.spec.path == self.loaded.spec.path or not backend.can("tokenizer"):
            return self.token_bytes
        from decodelab.engine.decoding.token_bytes import TokenBytes

        if id(backend.tokenizer) not in self.pane_token_bytes:
            self.pane_token_bytes[id(backend.tokenizer)] = TokenBytes(backend.tokenizer)
        return self.pane_token_bytes[id(backend.tokenizer)]

    def written_by_other(self, state) -> str | None:
        """The model that wrote the pane's output when it is not the one the pane runs on now (its tokens then
        mean nothing to the pane's model); None otherwise."""
        backend = self.backend_for(state)
        if state.model is None or backend is None or state.model == self.model_label(backend):
            return None
        return state.model

    def model_label(self, backend) -> str:
        from decodelab.engine.backends.pool import spec_label

        return spec_label(backend.spec)

    # -- shift+m -----------------------------------------------------------------------------------------
    def pane_model(self, pane) -> None:
        """shift+m: put this pane on a model of its own (or back on the app's with an empty answer)."""
        from decodelab.engine.backends.pool import spec_text

        from .screens.ask import AskText

        if self.loaded is None:
            self.notify("No model is loaded yet (press m to load one).", severity="warning")
            return
        current = spec_text(pane.state.model_spec) if pane.state.model_spec else ""

        def check(text: str) -> str | None:
            from decodelab.engine.backends.pool import spec_from_text
            from decodelab.engine.config import ConfigError

            try:
                spec_from_text(text.strip(), self.loaded.spec) if text.strip() else None
            except ConfigError as exc:
                return str(exc)
            return None

        self.push_screen(AskText(
            f"Pane {pane.number}'s model (empty: the app's, {self.model_label(self.loaded)})", current, check,
            detail="A folder, cached hub id, FILE.gguf, smollm2 or demo, then load settings after commas: "
                   "dtype=bfloat16, quantization=4bit or 8bit (quant_type=nf4|fp4), engine=llama.cpp, device=cpu, "
                   "chat=false. e.g. smollm2,dtype=bfloat16"), lambda text: self.set_pane_model(pane, text))

    def set_pane_model(self, pane, text: str | None) -> None:
        from decodelab.engine.backends.pool import load_key, spec_from_text
        from decodelab.engine.config import ConfigError

        if text is None:
            return
        if self.running and pane.state.running:
            self.notify("This pane is running: wait for it, or Esc to cancel, then change its model.",
                        severity="warning")
            return
        if not text.strip():
            pane.state.model_spec = None
            self.models_changed(f"Pane {pane.number} is back on {self.model_label(self.loaded)}.")
            return
        try:
            spec = spec_from_text(text.strip(), self.loaded.spec)
        except ConfigError as exc:
            self.notify(str(exc), title="Model not set", severity="error", timeout=10)
            return
        if load_key(spec) == load_key(self.loaded.spec):
            pane.state.model_spec = None
            self.models_changed(f"Pane {pane.number} runs on the app's model, {self.model_label(self.loaded)}.")
            return
        pane.state.model_spec = spec
        if load_key(spec) in self.pool.models:
            self.models_changed(f"Pane {pane.number} runs on {self.model_label(self.pool.models[load_key(spec)])}.")
            return
        self.load_pane_model(spec)

    def load_pane_model(self, spec) -> None:
        from decodelab.engine.backends.pool import load_key

        if load_key(spec) in self.loading_models:
            return
        self.loading_models.add(load_key(spec))
        self._pane_model_worker(spec)
        self.call_after_refresh(self.refresh_panes)

    @work(thread=True, group="pane-model")
    def _pane_model_worker(self, spec) -> None:
        from decodelab.engine.backends.base import ModelLoadError
        from decodelab.engine.backends.pool import spec_label

        rows = sum(p.state.model_spec == spec for p in self.panes()) or 1
        tokens = max((p.state.config.max_new_tokens for p in self.panes()), default=256) + 1024
        try:
            self.session.model(spec, lambda stage, f: self.post_message(PaneModelProgress(spec, stage, f)),
                               api_key=self.api_key, rows=rows, tokens=tokens)
        except ModelLoadError as exc:
            self.post_message(PaneModelFailed(spec, str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - the app must survive any load failure
            self.post_message(PaneModelFailed(spec, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(PaneModelLoaded(spec, spec_label(spec)))

    def on_pane_model_progress(self, message: PaneModelProgress) -> None:
        from decodelab.engine.backends.pool import spec_label

        pct = f"{message.fraction * 100:.0f}% " if message.fraction is not None else ""
        bar = self.query_one("#model-bar", Static)
        bar.add_class("-loading")
        bar.update(f"loading {spec_label(message.spec)} for a pane: {pct}{message.stage}…")

    def on_pane_model_loaded(self, message: PaneModelLoaded) -> None:
        from decodelab.engine.backends.pool import load_key

        self.loading_models.discard(load_key(message.spec))
        self.models_loaded.append(message.label)
        if self.loading_models:  # one note once every model asked for is in
            return
        names, self.models_loaded = self.models_loaded, []
        if self.run_at_start and self.loaded is not None:  # the command line's prompt runs once all are in
            self.models_changed()
            self.on_model_loaded_run()
            return
        self.models_changed(f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} loaded: "
                            f"{'its' if len(names) == 1 else 'their'} panes run on "
                            f"{'it' if len(names) == 1 else 'them'} (ctrl+r).")

    def on_pane_model_failed(self, message: PaneModelFailed) -> None:
        from decodelab.engine.backends.pool import load_key, spec_label

        self.loading_models.discard(load_key(message.spec))
        if not self.loading_models and self.run_at_start and self.loaded is not None:
            self.call_after_refresh(self.on_model_loaded_run)
        for pane in self.panes():
            if pane.state.model_spec == message.spec:
                pane.state.model_spec = None  # back on the app's model: the pane stays usable
        self.models_changed()
        self.notify(f"Could not load {spec_label(message.spec)}: {message.error}\nIts panes stay on the app's model.",
                    title="Model not loaded", severity="error", timeout=15)

    def models_changed(self, note: str | None = None) -> None:
        """Pane models changed: unload the unused, redraw titles and the bar, say what happened."""
        from decodelab.engine.backends.pool import load_key

        states = [p.state for p in self.panes()] + [e[2] for e in self.undo_stack if e[0] == "remove"]
        used = {load_key(s.model_spec) for s in states if s.model_spec is not None}  # u may bring a pane back
        if self.pool.keep(used | self.loading_models):
            self.chat_views.clear()  # no view may keep an unloaded model alive
        if self.reference is not None and all(p.state is not self.reference for p in self.panes()):
            self.reference = None  # its pane was removed
        if self.loaded is not None:
            self.update_model_bar()
        self.refresh_panes()
        if note:
            self.notify(note, timeout=5)

    def missing_models(self, panes) -> str | None:
        """Why the panes cannot run yet: a pane model still loading (loaded now if it had been unloaded)."""
        from decodelab.engine.backends.pool import load_key, spec_label

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

    # -- shift+r: the reference pane and the agreement figures --------------------------------------------
    def set_reference(self, pane) -> None:
        """shift+r: measure every other pane against this one (again: no reference)."""
        if self.reference is pane.state:
            self.reference = None
            for p in self.panes():
                p.state.agreement, p.state.kl_levels = None, None
            if self.measure == "kl":
                self.measure = "prob"
                self.update_legend()
            self.refresh_panes()
            self.notify("No reference pane: the agreement figures are off.", timeout=4)
            return
        self.reference = pane.state
        self.notify(f"Pane {pane.number} is the reference: each other pane on the same prompt is measured against "
                    "it after every run (h: the kl heatmap).", timeout=6)
        self.measure_agreement()

    def measure_agreement(self) -> None:
        """Start measuring every pane against the reference (after a run, or when the reference is set)."""
        ref = self.reference
        if ref is None or ref.completion is None or self.running:
            self.refresh_panes()
            return
        ref_backend = self.backend_for(ref)
        jobs = []
        for pane in self.panes():
            state = pane.state
            state.agreement, state.kl_levels = None, None
            if state is ref or state.completion is None or state.prompt != ref.prompt:
                continue
            backend = self.backend_for(state)
            if backend is not None and ref_backend is not None:
                jobs.append((state, backend))
        if jobs:
            self._agreement_worker(ref, ref_backend, jobs)
        self.refresh_panes()

    @work(thread=True, exclusive=True, group="agreement")
    def _agreement_worker(self, ref, ref_backend, jobs) -> None:
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
        self.post_message(AgreementReady(ref, results))

    def on_agreement_ready(self, message: AgreementReady) -> None:
        if message.reference is not self.reference:
            return  # the reference changed meanwhile
        for state, figures, levels, problem in message.results:
            if state.completion is None:
                continue
            state.agreement = figures if figures is not None else problem
            state.kl_levels = levels
        self.refresh_panes()


def agreement_text(figures) -> str:
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
