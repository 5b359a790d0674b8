"""A Dialect: how one stack names and writes decodelab's settings, read from the settings table's columns.

Each row of SETTINGS (engine/config.py) has a column per stack: the setting's name there, or a Spell with
the values that stack writes differently (vLLM's top_k -1 for off, llama.cpp's top_n_sigma -1, the webui's
cutoffs in units of 1e-4, a seed of -1 for "random") and what a user must know when it travels there.
STAGE_TABLE's columns give each stack's names in its sampler order (llama.cpp's `samplers`, the webui's
`sampler_priority`). Every export, import, request alias, the remote client and the README's table of
names read a Dialect; no other per-stack name map exists.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..config import (SAME, SETTING, SETTINGS, STAGE, STAGE_TABLE, ConfigError, DecodingConfig, Setting, Spell,
                      effective_order, stage_active)


class Dialect:
    """One stack's names and value conventions."""

    def __init__(self, stack: str, title: str, greedy_temperature: float | None, column: str | None = None,
                 only: Iterable[str] | None = None, greedy_warpers: bool = True, inert_order: Iterable[str] = ()):
        self.stack, self.title = stack, title
        self.greedy_warpers = greedy_warpers
        """False: a greedy config's warper settings are left out (HF warns about warpers beside do_sample=false,
        and ignores them)."""
        self.inert_order = frozenset(inert_order)
        """Names this stack may list in its sampler order that order nothing decodelab runs (llama.cpp's "dist")."""
        self.greedy_temperature = greedy_temperature
        """What temperature a greedy config is written with (0: the stack's greedy; None: as it is, beside
        do_sample=false)."""
        self.column = column or stack
        """The table column it reads (llama.cpp's server and command line share one)."""
        self.only = frozenset(only) if only is not None else None
        """The settings this stack takes, when it takes fewer than its column names (llama-cpp-python's server)."""

    # -- names ---------------------------------------------------------------------------------------------
    def spell(self, name: str) -> Spell | None:
        """How this stack writes the setting (None: the table names nothing for it here)."""
        if self.only is not None and name not in self.only:
            return None
        return SETTING[name].spell(self.column)

    def name(self, name: str) -> str | None:
        """The setting's name in this stack, or None when it has none."""
        spell = self.spell(name)
        return spell.name if spell is not None else None

    def names(self) -> dict[str, str]:
        """decodelab setting -> its name here, for every setting this stack has."""
        return {s.name: theirs for s in SETTINGS if (theirs := self.name(s.name))}

    def aliases(self) -> dict[str, str]:
        """This stack's field name -> the decodelab setting it is."""
        return {theirs: ours for ours, theirs in self.names().items()}

    # -- values --------------------------------------------------------------------------------------------
    def value(self, config: DecodingConfig, name: str) -> Any:
        """The config's setting as this stack writes it."""
        s, value = SETTING[name], getattr(config, name)
        spell = self.spell(name) or Spell(name)
        if name == "do_sample":
            return config.samples
        if name == "temperature" and not config.samples and self.greedy_temperature is not None:
            return self.greedy_temperature
        if s.warper and not config.samples and not self.greedy_warpers:
            return OMIT
        if value is None and spell.none is not SAME:
            return spell.none
        if spell.whole is not SAME and value in WHOLE.get(name, ()):
            return spell.whole
        if value == s.default and spell.off is not SAME:
            return spell.off
        if spell.unit != 1 and isinstance(value, (int, float)):
            return round(value / spell.unit, 9)
        if s.kind in ("strings", "tokens"):
            return list(value)
        return value

    def read(self, name: str, value: Any, refuse: bool = True) -> Any:
        """A value this stack sent for a setting, as decodelab's (ConfigError for one it cannot mean here; refuse=
        False where decodelab's own field has the same name, so decodelab's meaning of the value stands)."""
        spell = self.spell(name) or Spell(name)
        for refused, why in spell.refused if refuse else ():
            if value == refused:
                raise ConfigError(f"{spell.name}={value!r} {why}", field=name)
        if spell.off is not SAME and (value == spell.off or (spell.off == -1 and value < 0)):
            return SETTING[name].default  # -1 for off: any negative value is off there
        if spell.whole is not SAME and (value == spell.whole or value == -1):
            return 0
        if spell.none is not SAME and value == spell.none:
            return None
        if spell.unit != 1 and isinstance(value, (int, float)) and not isinstance(value, bool):
            return round(value * spell.unit, 12)  # 3 x 1e-4 is 0.00030000000000000003 in floats
        return value

    def fields(self, config: DecodingConfig, skip: Iterable[str] = ()) -> dict[str, Any]:
        """Every setting this stack names, under its name and in its spelling, neutral values written out (the
        stacks' own defaults are not all neutral); `skip`: the settings the caller writes its own way."""
        skip = set(skip) | SPECIAL
        out = {spell.name: self.value(config, s.name) for s in SETTINGS
               if s.name not in skip and (spell := self.spell(s.name)) is not None and spell.name
               and not (s.kind in ("strings", "tokens") and not s.default and not getattr(config, s.name))}
        # an empty list at its empty default overrides nothing: left out; so are a greedy config's warpers where
        # the stack warns about them (HF: "generation flags are not valid" beside do_sample=false)
        return {k: v for k, v in out.items() if v is not OMIT}

    # -- notes ---------------------------------------------------------------------------------------------
    def changed(self, config: DecodingConfig, s: Setting) -> bool:
        value = getattr(config, s.name)
        return value != s.default and not (s.name in WHOLE and value in WHOLE[s.name])

    def notes(self, config: DecodingConfig, handled: Iterable[str] = ()) -> list[str]:
        """What does not travel: each changed setting this stack has no name for ("NOT carried over", and why
        where the table says), then what differs for the changed settings it has (the table's notes)."""
        handled = set(handled)
        out = []
        for s in SETTINGS:
            if s.name in handled or s.name in ("name", "description") or not self.changed(config, s):
                continue
            spell = self.spell(s.name)
            if spell is None or not spell.name:
                why = (spell.note if spell is not None else "") or s.elsewhere
                out.append(f"{self.title} has no {s.name}: this preset's {s.name}={getattr(config, s.name)!r} is NOT "
                           f"carried over" + (f" ({why})" if why else ""))
        for s in SETTINGS:
            spell = self.spell(s.name)
            if spell is not None and spell.name and spell.note and self.changed(config, s) and (
                    spell.when is None or spell.when(config)):
                out.append(spell.note)
        return list(dict.fromkeys(out))  # one note said once (frequency and presence share one)

    # -- the sampler order -----------------------------------------------------------------------------------
    def order(self, config: DecodingConfig) -> list[str]:
        """The config's stage order in this stack's names (every stage it names, so none is left for the stack to
        place by itself), the selection stage the config uses at the end."""
        out: list[str] = []
        for stage in effective_order(config):
            out += self._stage_names(stage)
        for row in STAGE_TABLE:
            if row.place == "selection" and stage_active(row.name, config):
                out += self._stage_names(row.name)
        return list(dict.fromkeys(out))

    def _stage_names(self, stage: str) -> list[str]:
        names = getattr(STAGE[stage], self.column, None)
        if names is None:
            return []
        return [names] if isinstance(names, str) else list(names)

    def stage_of(self) -> dict[str, str]:
        """This stack's sampler-order name -> decodelab's stage (its own names too)."""
        out = {row.name: row.name for row in STAGE_TABLE if row.place == "chain"}
        for row in STAGE_TABLE:
            for name in self._stage_names(row.name):
                out[name] = row.name
        return out

    def read_order(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """(decodelab's sampler_order, the names that have no reorderable decodelab stage) from this stack's
        order. A stage the stack has no name for is not listed (that stack's preset cannot turn it on): it keeps
        its default place after the listed ones."""
        known = self.stage_of()
        stages = list(dict.fromkeys(known[n] for n in names if n in known and STAGE[known[n]].place == "chain"))
        dropped = [n for n in names if n not in known and n not in self.inert_order]
        return stages, dropped


OMIT = object()
"""value()'s "leave this setting out"."""
WHOLE = {"repetition_penalty_last_n": (0,), "dry_penalty_last_n": (0, -1)}
"""Values meaning "the whole context" (decodelab's 0; DRY's -1 too), for the stacks that spell it otherwise."""
SPECIAL = frozenset({"name", "description", "logit_bias", "sampler_order", "json_schema", "regex", "choice",
                     "grammar"})
"""Settings each export writes in its stack's own shape (biases, the order, structured output)."""
