"""The settings table, and DecodingConfig built from it.

SETTINGS has one row per decoding setting: its kind, default (the neutral value wherever it feeds a
sampler stage, so that it changes nothing), range, help, the stage it feeds, whether the batch holds it
as a per-row tensor, its label in the summary line, and its name in HF transformers, vLLM, the OpenAI
API, llama.cpp's server and text-generation-webui (None: that stack has no such setting).

Everything else reads the table: DecodingConfig's fields and validation, the help texts, the one text
parser every front end uses (engine/fieldtext.py), the summary line, the sampler stages (each reads the rows
whose `stage` names it: engine/sampling/stage.py), sweeps, the server's request fields and the dialects of
the other stacks (engine/dialects/). STAGE_TABLE is the sampler chain's one ordered list. A new setting is
one row here, plus the stage that reads it and tests; a new stage is also a STAGE_TABLE row and a class.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Iterable

from .checks import CHECKS, CONSTRAINT_FIELDS, SEED_MAX, ConfigError, fail as _fail  # noqa: F401 - re-exported
from .grammars import check_constraint

DRY_BREAKERS_DEFAULT = ("\n", ":", "\"", "*")
STACKS = ("hf", "vllm", "openai", "llamacpp", "webui")
LLAMACPP_WHOLE = 131072
"""llama.cpp's "whole context" for its penalty windows: current llama.cpp refuses -1 and reads 0 as "off", and
allocates the window up front, so the largest context it serves stands for the whole of it."""


class _Same:
    def __repr__(self) -> str:
        return "SAME"


SAME: Any = _Same()
"""A Spell's "written as decodelab writes it"."""


@dataclass(frozen=True)
class Spell:
    """How another stack writes a setting: its name there, the values it spells differently, what differs."""

    name: str | None
    """Its name there (None: the stack has no such setting; the note then says why, or what to do)."""
    off: Any = SAME
    """What the stack writes for decodelab's neutral value (vLLM's top_k -1, llama.cpp's top_n_sigma -1)."""
    whole: Any = SAME
    """What it writes for decodelab's "the whole context" (a penalty window of 0)."""
    none: Any = SAME
    """What it writes for decodelab's None (a seed of -1: pick one)."""
    unit: float = 1.0
    """The stack counts in these units: it writes value / unit (the webui's cutoffs in 1e-4)."""
    flag: str = ""
    """llama.cpp's command-line flag, where it is not --name-with-dashes."""
    note: str = ""
    """What a user must know when the setting travels there (said whenever the setting is changed)."""
    refused: tuple[tuple[Any, str], ...] = ()
    """Values the stack sends that decodelab cannot take as they mean there, each with why."""
    when: Any = None
    """For a note that matters for some values only: a function of the config that says when (None: whenever the
    setting is changed)."""


def _spell(value) -> Spell | None:
    return Spell(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    kind: str
    """text, bool, int, float, strings (a list of texts), seed (int or none), bias (logit_bias), choice, tokens
    (a list of token ids or one-token texts)."""
    default: Any
    help: str
    allowed: str = ""
    """The rule, as an error message says it: "it must be in (0, 1]; 1 turns it off"."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    stage: str | None = None
    """The stage (a row of STAGE_TABLE) that reads it: the stage's class finds its settings here (None: it shapes
    the run, not the distribution; "sample", "beams" and "chain" are the run's own)."""
    warper: bool = False
    """Acts on sampling rows only; a greedy row sees the default (HF applies warpers only when sampling)."""
    label: str | None = None
    """Its part of the summary line when changed: "rep" gives rep=1.1; a format with {v} and {c} is used as is."""
    hf: str | Spell | None = None
    vllm: str | Spell | None = None
    openai: str | Spell | None = None
    llamacpp: str | Spell | None = None
    webui: str | Spell | None = None
    elsewhere: str = ""
    """Where no other stack has it: what a user should know (said in every export's "NOT carried over" note)."""

    def spell(self, stack: str) -> Spell | None:
        """How another stack (hf, vllm, openai, llamacpp, webui) writes this setting, or None (the table is silent)."""
        return _spell(getattr(self, stack))

    def name_in(self, stack: str) -> str | None:
        """This setting's name in another stack, or None when it has none."""
        spell = self.spell(stack)
        return spell.name if spell is not None else None

    def in_range(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def check(self, value: Any) -> Any:
        """The value, normalised (ints for whole floats, tuples for lists), or ConfigError naming the field."""
        return CHECKS[self.kind](self, value)


def _row(name, kind, default, help, allowed="", **more) -> Setting:
    return Setting(name, kind, default, help, allowed, **more)


def _sampler(name, kind, default, help, allowed, stage, warper=True, **more) -> Setting:
    """A sampler stage's parameter (a warper unless said: it acts on sampling rows only, as HF's warpers do)."""
    return Setting(name, kind, default, help, allowed, stage=stage, warper=warper, **more)


LLAMACPP_COUNTS = ("llama.cpp's frequency/presence penalties count tokens in the penalty window (prompt included), "
                   "not only generated ones as decodelab and OpenAI do")
LLAMACPP_OFF = ((0, "switches the penalty off in llama.cpp, while decodelab's 0 means the whole context: send -1 for "
                    "the whole context (or the window you want), or leave the penalty out"),)
WEBUI_UNITS = "epsilon_cutoff and eta_cutoff are written in the webui's units of 1e-4"
NO_PLESS = ("no stack decodelab exports to has shipped p-less yet: llama.cpp #26035, vLLM #45288 and transformers "
            "#41798 are open pull requests (mlx-vlm has it)")

# fmt: off
SETTINGS: tuple[Setting, ...] = (
    _row("name", "text", "custom", "a short name for this config (shown as the pane title)"),
    _row("description", "text", "", "free text: what this config is for"),
    _row("do_sample", "bool", False, "false: always take the most likely token (greedy); true: draw from the "
         "distribution", stage="sample", hf="do_sample", webui="do_sample"),
    _sampler("temperature", "float", 1.0, "divides the logits: below 1 sharpens, above 1 flattens; 0 = greedy",
             "it must be >= 0 (0 means greedy)", "temperature", low=0,
             hf="temperature", vllm="temperature", openai="temperature", llamacpp=Spell("temperature", flag="--temp"),
             webui="temperature"),
    _row("top_k", "int", 0, "keep only the k most likely tokens; 0 = off", "it must be an integer >= 0; 0 turns it off",
         low=0, stage="top_k", warper=True, hf="top_k", vllm=Spell("top_k", off=-1), llamacpp="top_k", webui="top_k"),
    _sampler("top_p", "float", 1.0, "keep the smallest set of likeliest tokens whose probabilities add up to p; "
             "1 = off", "it must be in (0, 1]; 1 turns it off", "top_p", low=0, high=1, low_open=True,
             hf="top_p", vllm="top_p", openai="top_p", llamacpp="top_p", webui="top_p"),
    _sampler("min_p", "float", 0.0, "drop tokens less likely than min_p x the top token's probability; 0 = off",
             "it must be in [0, 1]; 0 turns it off", "min_p", low=0, high=1, label="min_p",
             hf=Spell("min_p", off=None), vllm="min_p", llamacpp="min_p", webui="min_p"),
    _sampler("p_less", "bool", False, "p-less (Tan, Wu and Howard, ICLR 2026): keep the tokens at least as likely as "
             "the collision probability sum(p^2) of the distribution after temperature; nothing to tune, the top token "
             "always stays", "it must be true or false", "p_less", label="p-less", elsewhere=NO_PLESS),
    _sampler("p_less_norm", "bool", False, "p-less-norm, the paper's relaxed variant: the threshold is (V sum(p^2) - 1) "
             "/ (V - 1), V the vocabulary size, so it keeps more tokens than p-less", "it must be true or false",
             "p_less", label="p-less-norm", elsewhere=NO_PLESS),
    _sampler("typical_p", "float", 1.0, "keep tokens whose surprise is close to the entropy (locally typical "
             "sampling); 1 = off", "it must be in (0, 1]; 1 turns it off", "typical_p", low=0, high=1,
             low_open=True, label="typ", hf="typical_p", llamacpp=Spell("typical_p", flag="--typical"), webui="typical_p"),
    _sampler("repetition_penalty", "float", 1.0, "tokens already in prompt or output: positive logits divided by "
             "it, negative multiplied; 1 = off", "it must be > 0; 1 turns it off", "penalties", warper=False, low=0,
             low_open=True, label="rep", hf="repetition_penalty", vllm="repetition_penalty",
             llamacpp="repeat_penalty", webui="repetition_penalty"),
    _sampler("frequency_penalty", "float", 0.0, "subtract penalty x (times the token was generated); 0 = off",
             "it must be in [-2, 2]; 0 turns it off", "penalties", warper=False, low=-2, high=2, label="freq",
             vllm="frequency_penalty", openai="frequency_penalty", llamacpp=Spell("frequency_penalty", note=LLAMACPP_COUNTS),
             webui="frequency_penalty"),
    _sampler("presence_penalty", "float", 0.0, "subtract penalty once if the token was generated at all; 0 = off",
             "it must be in [-2, 2]; 0 turns it off", "penalties", warper=False, low=-2, high=2, label="pres",
             vllm="presence_penalty", openai="presence_penalty", llamacpp=Spell("presence_penalty", note=LLAMACPP_COUNTS),
             webui="presence_penalty"),
    _sampler("no_repeat_ngram_size", "int", 0, "forbid any n-gram of this size from appearing twice; 0 = off",
             "it must be an integer >= 0; 0 turns it off", "no_repeat_ngram", warper=False, low=0, label="ngram",
             hf="no_repeat_ngram_size", webui="no_repeat_ngram_size"),
    _row("num_beams", "int", 1, "keep this many candidate sequences, return the best by summed logprob; 1 = off",
         "it must be an integer >= 1; 1 turns beams off", low=1, stage="beams", hf="num_beams", webui="num_beams"),
    _row("length_penalty", "float", 1.0, "beams only: the score is divided by length^penalty; > 0 favours longer "
         "beams", "it must be a finite number", stage="beams", hf="length_penalty", webui="length_penalty"),
    _row("max_new_tokens", "int", 128, "the most tokens to generate", "it must be an integer >= 1", low=1,
         hf="max_new_tokens", vllm="max_tokens", openai="max_tokens", llamacpp=Spell("n_predict", flag="-n"),
         webui="max_new_tokens"),
    _sampler("min_new_tokens", "int", 0, "end-of-sequence is forbidden until this many tokens",
             "it must be an integer >= 0", "min_new_tokens", warper=False, low=0,
             hf="min_new_tokens", vllm="min_tokens",
             webui=Spell("min_length", note="the webui's min_length is HF's: it counts the prompt's tokens too, so it "
                         "asks for fewer new tokens than min_new_tokens does")),
    _sampler("ignore_eos", "bool", False, "end-of-sequence never ends the row: EOS is forbidden up to max_new_tokens "
             "(llama.cpp's ignore_eos)", "it must be true or false", "min_new_tokens", warper=False, label="no-eos",
             llamacpp=Spell("ignore_eos", flag="--ignore-eos"), webui="ban_eos_token",
             vllm=Spell("ignore_eos", note="vLLM's ignore_eos lets EOS be sampled and goes on past it; decodelab "
                        "forbids EOS, as llama.cpp does")),
    _row("stop_strings", "strings", (), "stop when the text contains one of these; it is trimmed from the output",
         hf=Spell("stop_strings", note="HF needs the tokenizer for stop_strings: pass tokenizer=... to generate()"),
         vllm="stop", openai="stop", llamacpp=Spell("stop", flag="--reverse-prompt")),
    _row("stop_token_ids", "tokens", (), "stop when one of these tokens is generated (token ids, or texts of one "
         "token each); the token stays in the output", label="stop-ids={n}",
         vllm=Spell("stop_token_ids", note="vLLM's stop_token_ids takes token ids: texts in stop_token_ids are NOT "
                    "carried over", when=lambda c: any(isinstance(t, str) for t in c.stop_token_ids)),
         hf=Spell(None, note="HF stops on the ids in generation_config.eos_token_id: add stop_token_ids to the "
                  "model's own EOS ids there")),
    _row("seed", "seed", None, "seeds this config's own random stream; none = pick one and report it",
         f"it must be an integer in [0, {SEED_MAX}] or none", stage="sample",
         hf=Spell(None, note="call torch.manual_seed(SEED) before generate; HF's sampling stream differs from "
                  "decodelab's, so the text will differ anyway"),
         vllm="seed", openai=Spell("seed", note="OpenAI treats seed as best effort: outputs may still vary"),
         llamacpp=Spell("seed", none=-1), webui=Spell("seed", none=-1)),
    _row("early_stopping", "choice", False, "beams only (HF): true stops when num_beams finished; false (HF "
         "default) uses a heuristic; \"never\" searches on", 'it must be true, false or "never" (HF\'s values)',
         stage="beams", hf="early_stopping", webui="early_stopping"),
    _sampler("top_n_sigma", "float", 0.0, "keep tokens whose logit is at least max - n x std of the logits; 0 = off "
             "(llama.cpp's -1)", "it must be >= 0; 0 turns it off", "top_n_sigma", low=0, label="nsigma",
             llamacpp=Spell("top_n_sigma", off=-1, flag="--top-nsigma"), webui="top_n_sigma"),
    _sampler("xtc_probability", "float", 0.0, "XTC: with this chance per step, remove every token at or above "
             "xtc_threshold but the least likely of them; 0 = off", "it must be in [0, 1]; 0 turns it off", "xtc",
             low=0, high=1, label="xtc={c.xtc_probability:g}@{c.xtc_threshold:g}",
             llamacpp="xtc_probability", webui="xtc_probability"),
    _sampler("xtc_threshold", "float", 0.1, "XTC: the probability a token needs to count as a 'top choice'; above "
             "0.5 XTC does nothing", "it must be in [0, 1]; above 0.5 XTC does nothing", "xtc", low=0, high=1,
             llamacpp="xtc_threshold", webui="xtc_threshold"),
    _sampler("dry_multiplier", "float", 0.0, "DRY: penalty for extending a repeated sequence, multiplier x "
             "base^(length - allowed); 0 = off", "it must be >= 0; 0 turns DRY off", "dry", warper=False, low=0,
             label="dry", llamacpp="dry_multiplier", webui="dry_multiplier"),
    _sampler("dry_base", "float", 1.75, "DRY: how fast the penalty grows with the repeated length (>= 1)",
             "it must be >= 1", "dry", warper=False, low=1, llamacpp="dry_base", webui="dry_base"),
    _sampler("dry_allowed_length", "int", 2, "DRY: repeats up to this many tokens are not penalised",
             "it must be an integer >= 1", "dry", warper=False, low=1,
             llamacpp="dry_allowed_length", webui="dry_allowed_length"),
    _sampler("dry_penalty_last_n", "int", 0, "DRY: how many recent tokens (prompt included) it scans; 0 or -1 = "
             "the whole context", "it must be an integer >= -1; 0 or -1 = the whole context", "dry", warper=False,
             low=-1, llamacpp=Spell("dry_penalty_last_n", whole=LLAMACPP_WHOLE, refused=LLAMACPP_OFF),
             webui=Spell(None, note="the webui's DRY scans the repetition_penalty_range window")),
    _row("dry_sequence_breakers", "strings", DRY_BREAKERS_DEFAULT, "DRY: texts that end a repeated sequence "
         "(llama.cpp default: newline, :, \", *)", stage="dry",
         llamacpp=Spell("dry_sequence_breakers", flag="--dry-sequence-breaker"), webui="dry_sequence_breakers"),
    _sampler("mirostat", "int", 0, "Mirostat adaptive sampling: 0 = off, 1 = v1, 2 = v2 (llama.cpp); steers "
             "surprise toward tau", "it must be 0 (off), 1 or 2", "mirostat", low=0, high=2,
             label="mirostat{c.mirostat}(tau={c.mirostat_tau:g})",
             llamacpp=Spell("mirostat", note="with Mirostat on, llama.cpp runs temperature and Mirostat alone: its "
                            "penalties, DRY, top-k, top-p, min-p, typical-p, XTC and the --samplers order are skipped, "
                            "while decodelab applies whatever else is set before Mirostat: set those neutral to match"),
             webui=Spell("mirostat_mode", note="the webui's Transformers loader has Mirostat 2 only: mirostat=1 runs as "
                         "Mirostat 2 there", when=lambda c: c.mirostat == 1)),
    _sampler("mirostat_tau", "float", 5.0, "Mirostat: target surprise in bits (its state mu starts at 2 x tau)",
             "it must be > 0 (target surprise in bits)", "mirostat", low=0, low_open=True,
             llamacpp=Spell("mirostat_tau", flag="--mirostat-ent"), webui="mirostat_tau"),
    _sampler("mirostat_eta", "float", 0.1, "Mirostat: learning rate of mu", "it must be > 0 (learning rate)",
             "mirostat", low=0, low_open=True, llamacpp=Spell("mirostat_eta", flag="--mirostat-lr"), webui="mirostat_eta"),
    _sampler("dynatemp_range", "float", 0.0, "dynamic temperature: temperature +- range, scaled by the normalised "
             "entropy; 0 = off", "it must be >= 0; 0 turns it off", "temperature", low=0, label="dyT=+-{v:g}",
             llamacpp="dynatemp_range"),
    _sampler("dynatemp_exponent", "float", 1.0, "dynamic temperature: exponent on the normalised entropy",
             "it must be >= 0", "temperature", low=0, llamacpp=Spell("dynatemp_exponent", flag="--dynatemp-exp"),
             webui="dynatemp_exponent"),
    _sampler("epsilon_cutoff", "float", 0.0, "drop tokens with probability below this (HF EpsilonLogitsWarper); "
             "0 = off", "it must be in [0, 1); 0 turns it off", "epsilon_cutoff", low=0, high=1, high_open=True,
             label="eps", hf="epsilon_cutoff", webui=Spell("epsilon_cutoff", unit=1e-4, note=WEBUI_UNITS)),
    _sampler("eta_cutoff", "float", 0.0, "drop tokens below min(eta, sqrt(eta) x exp(-entropy)) (HF "
             "EtaLogitsWarper); 0 = off", "it must be in [0, 1); 0 turns it off", "eta_cutoff", low=0, high=1,
             high_open=True, label="eta", hf="eta_cutoff", webui=Spell("eta_cutoff", unit=1e-4, note=WEBUI_UNITS)),
    _row("logit_bias", "bias", (), "token id or token text -> bias added to its logit (a text biases each of its "
         "tokens); -inf bans", stage="logit_bias", label="bias={n}",
         vllm="logit_bias", openai="logit_bias", llamacpp="logit_bias"),
    _row("banned_strings", "strings", (), "never emit these texts' token sequences (HF bad_words_ids: the text's "
         "own tokens)", stage="banned_strings", label="banned={n}",
         hf=Spell(None, note="HF's bad_words_ids takes token ids: pass tokenizer(text, add_special_tokens=False)"
                  "['input_ids'] for each text, as decodelab bans exactly the text's own tokens"),
         vllm=Spell("bad_words", note="vLLM's bad_words also bans each word with a leading space; decodelab bans exactly "
                    "the tokens of the text given (decodelab serve reads a bad_words field as vLLM means it)")),
    _sampler("repetition_penalty_last_n", "int", 0, "the repetition penalty looks only at the last N tokens; 0 = "
             "the whole context", "it must be an integer >= 0; 0 = the whole context", "penalties", warper=False,
             low=0, llamacpp=Spell("repeat_last_n", whole=LLAMACPP_WHOLE, refused=LLAMACPP_OFF),
             webui="repetition_penalty_range"),
    _sampler("smoothing_factor", "float", 0.0, "quadratic sampling: bend the logits around the top one by "
             "factor x (difference)^2 (text-generation-webui, KoboldCpp); higher is sharper; 0 = off",
             "it must be >= 0; 0 turns it off", "smoothing", low=0,
             label="smooth={c.smoothing_factor:g}/{c.smoothing_curve:g}", webui="smoothing_factor"),
    _sampler("smoothing_curve", "float", 1.0, "quadratic sampling: 1 = quadratic, 3 = cubic (between them, a mix)",
             "it must be >= 1 (1 = quadratic)", "smoothing", low=1, webui="smoothing_curve"),
    _sampler("top_h", "float", 0.0, "top-H (HF): keep the likeliest of the top 100 tokens while their summed "
             "entropy stays within top_h x the entropy; 0 = off", "it must be in [0, 1]; 0 turns it off", "top_h",
             low=0, high=1, label="top_h", hf=Spell("top_h", off=None)),
    _sampler("tfs", "float", 1.0, "tail-free sampling (text-generation-webui; llama.cpp removed it in 2024): cut "
             "the tail where the sorted probabilities' second difference passes this share; 1 = off",
             "it must be in [0, 1]; 1 turns it off", "tfs", low=0, high=1, label="tfs", webui="tfs",
             llamacpp=Spell(None, note="llama.cpp removed tail-free sampling in 2024: use text-generation-webui")),
    _sampler("top_a", "float", 0.0, "drop tokens below top_a x (top probability)^2 (text-generation-webui); 0 = off",
             "it must be in [0, 1]; 0 turns it off", "top_a", low=0, high=1, label="top_a", webui="top_a"),
    _sampler("adaptive_target", "float", -1.0, "adaptive-p (llama.cpp): pick tokens near this probability, "
             "steering the average toward it; it ends the chain; pair it with a cut such as min_p=0.05 (alone it "
             "can pick from the whole vocabulary); negative = off",
             "it must be in [-1, 1]; a negative value turns it off", "adaptive_p", low=-1, high=1,
             label="adaptive_p={c.adaptive_target:g}", llamacpp="adaptive_target",
             webui=Spell("adaptive_target", note="the webui turns adaptive-p on only for a target above 0 (decodelab "
                         "from 0 up): adaptive_target=0 is off there", when=lambda c: c.adaptive_target == 0)),
    _sampler("adaptive_decay", "float", 0.9, "adaptive-p: how slowly its running average forgets (0 to 0.99)",
             "it must be in [0, 0.99]", "adaptive_p", low=0, high=0.99, llamacpp="adaptive_decay",
             webui="adaptive_decay"),
    _sampler("guidance_scale", "float", 1.0, "classifier-free guidance (HF, text-generation-webui): steer away from "
             "negative_prompt, logprobs' = scale x (logprobs - negative's) + negative's; 1 = off",
             "it must be in [0, 100]; 1 turns it off", "cfg", warper=False, low=0, high=100, label="cfg",
             hf=Spell("guidance_scale", off=None), webui="guidance_scale"),
    _row("negative_prompt", "text", "", "classifier-free guidance: the text to steer away from (its own rows join "
         "the batch); empty = the prompt's last token, as HF does", stage="cfg", webui="negative_prompt"),
    _row("logprob_tokens", "tokens", (), "report these tokens' probabilities at every step, whatever their rank "
         "(token ids, or texts of one token each, e.g. \" Yes\")", label="named={n}", vllm="logprob_token_ids"),
    _row("json_schema", "json", "", "structured output: the text must be JSON that fits this JSON Schema (JSON text, "
         "a table, or @FILE; {} = any JSON value)", stage="grammar", label="schema{v:.0}",
         vllm="guided_json", openai="response_format", llamacpp="json_schema"),
    _row("regex", "text", "", "structured output: the whole text must match this regular expression (Rust regex "
         "syntax, as vLLM and llguidance take it)", stage="grammar", label="regex{v:.0}", vllm="guided_regex"),
    _row("choice", "strings", (), "structured output: the text is exactly one of these", stage="grammar",
         label="choice={n}", vllm="guided_choice"),
    _row("grammar", "text", "", "structured output: the text must follow this grammar, in llama.cpp's GBNF "
         "(root ::= ...; or @FILE)", stage="grammar", label="gbnf{v:.0}", vllm="guided_grammar",
         llamacpp="grammar", webui="grammar_string"),
    _row("sampler_order", "strings", (), "order of the sampling stages (like llama.cpp --samplers); unlisted stages "
         "keep their default place after the listed ones; empty = the default (HF) order", stage="chain",
         llamacpp="samplers", webui="sampler_priority"),
)
# fmt: on

SETTING: dict[str, Setting] = {s.name: s for s in SETTINGS}
FIELD_NAMES: tuple[str, ...] = tuple(SETTING)
FIELD_HELP: dict[str, str] = {s.name: s.help for s in SETTINGS}
STRING_LIST_FIELDS = frozenset(s.name for s in SETTINGS if s.kind == "strings")
INT_FIELDS = frozenset(s.name for s in SETTINGS if s.kind == "int")
NUMBER_FIELDS = frozenset(s.name for s in SETTINGS if s.kind in ("int", "float"))



@dataclass(frozen=True)
class StageRow:
    """One stage of the sampler chain, in its default place; its settings are the rows whose `stage` names it."""

    name: str
    place: str
    """constraint (always first), chain (reorderable with sampler_order) or selection (always last)."""
    llamacpp: str | None = None
    """Its name in llama.cpp's sampler chain (--samplers, the server's "samplers"), or None."""
    webui: tuple[str, ...] = ()
    """Its names in text-generation-webui's sampler_priority (the webui lists some stages under several)."""
    switches: tuple[str, ...] = ()
    """The settings whose value away from neutral turns it on (default: its first setting)."""
    also: Any = None
    """A further condition a config must meet for the stage to act (a function of the config), or None."""


# fmt: off
STAGE_TABLE: tuple[StageRow, ...] = (
    # guidance first, as HF runs it; then the constraints: masks commute with the penalties, and structured output
    # comes last of them, so that where a ban leaves a finished grammar no token, the grammar's end wins
    StageRow("cfg", "constraint"),
    StageRow("logit_bias", "constraint"),
    StageRow("banned_strings", "constraint"),
    StageRow("min_new_tokens", "constraint", switches=("min_new_tokens", "ignore_eos")),
    StageRow("grammar", "constraint", switches=CONSTRAINT_FIELDS),
    # the chain, in HF transformers 5.x's order for the processors it has (sampler_order reorders it); the stages HF
    # lacks sit where text-generation-webui or llama.cpp puts them. Greedy rows see only the first three.
    StageRow("penalties", "chain", "penalties", ("repetition_penalty", "presence_penalty", "frequency_penalty"),
             switches=("repetition_penalty", "frequency_penalty", "presence_penalty")),
    StageRow("dry", "chain", "dry", ("dry",)),
    StageRow("no_repeat_ngram", "chain", None, ("no_repeat_ngram",)),
    StageRow("temperature", "chain", "temperature", ("temperature", "dynamic_temperature"),
             switches=("temperature", "dynatemp_range")),
    StageRow("smoothing", "chain", None, ("quadratic_sampling",)),
    StageRow("top_h", "chain"),
    StageRow("top_n_sigma", "chain", "top_n_sigma", ("top_n_sigma",)),
    StageRow("top_k", "chain", "top_k", ("top_k",)),
    StageRow("top_p", "chain", "top_p", ("top_p",)),
    StageRow("min_p", "chain", "min_p", ("min_p",)),
    StageRow("p_less", "chain", switches=("p_less", "p_less_norm")),
    StageRow("typical_p", "chain", "typ_p", ("typical_p",)),
    StageRow("epsilon_cutoff", "chain", None, ("epsilon_cutoff",)),
    StageRow("eta_cutoff", "chain", None, ("eta_cutoff",)),
    StageRow("tfs", "chain", None, ("tfs",)),
    StageRow("top_a", "chain", None, ("top_a",)),
    StageRow("xtc", "chain", "xtc", ("xtc",), also=lambda c: c.xtc_threshold <= 0.5),  # above 0.5 XTC cannot act
    # selection: Mirostat or adaptive-p end the chain, as in llama.cpp; then the row draws (or takes the argmax)
    StageRow("mirostat", "selection", None, ("mirostat",)),
    StageRow("adaptive_p", "selection", "adaptive_p", ("adaptive_p",), also=lambda c: c.adaptive_target >= 0),
)
# fmt: on
STAGE: dict[str, StageRow] = {row.name: row for row in STAGE_TABLE}
SAMPLER_STAGES: tuple[str, ...] = tuple(row.name for row in STAGE_TABLE if row.place == "chain")
"""The reorderable stages, in their default order."""
RUN_STAGES = ("sample", "beams", "chain")
"""Values of a setting's `stage` that are the run's own, not a sampler stage."""
assert all(s.stage in STAGE or s.stage in RUN_STAGES for s in SETTINGS if s.stage), "a setting names no stage"


def settings_of(stage: str) -> tuple[str, ...]:
    """The settings a stage reads: the table's rows whose `stage` names it, in table order."""
    return tuple(s.name for s in SETTINGS if s.stage == stage)


def switches_of(stage: str) -> tuple[str, ...]:
    """The settings that turn a stage on (its row's switches, else its first setting)."""
    return STAGE[stage].switches or settings_of(stage)[:1]


def stage_active(stage: str, config: DecodingConfig, samples: bool | None = None) -> bool:
    """Whether a row with this config uses the stage: a switch away from its neutral value (a warper only when the
    row samples, as in HF), and the row's further condition. samples: None = the config's own."""
    switches = switches_of(stage)
    if SETTING[switches[0]].warper and not (config.samples if samples is None else samples):
        return False
    row = STAGE[stage]
    return any(getattr(config, s) != SETTING[s].default for s in switches) and (row.also is None or row.also(config))



# -- DecodingConfig -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodingConfig:
    """One decoding setup: a field per row of SETTINGS, validated on construction.

    Every default is neutral: all filters and penalties are off. The fields are written from the table by
    scripts/config_class.py (run it after adding a row), so that editors and type checkers see each one.
    """

    # -- fields: written by scripts/config_class.py from SETTINGS; tests/test_config.py keeps them in step --
    name: str = 'custom'
    description: str = ''
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    p_less: bool = False
    p_less_norm: bool = False
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    ignore_eos: bool = False
    stop_strings: tuple[str, ...] = ()
    stop_token_ids: tuple[int | str, ...] = ()
    seed: int | None = None
    early_stopping: bool | str = False
    top_n_sigma: float = 0.0
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = 0
    dry_sequence_breakers: tuple[str, ...] = ('\n', ':', '"', '*')
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    logit_bias: tuple[tuple[int | str, float], ...] = ()
    banned_strings: tuple[str, ...] = ()
    repetition_penalty_last_n: int = 0
    smoothing_factor: float = 0.0
    smoothing_curve: float = 1.0
    top_h: float = 0.0
    tfs: float = 1.0
    top_a: float = 0.0
    adaptive_target: float = -1.0
    adaptive_decay: float = 0.9
    guidance_scale: float = 1.0
    negative_prompt: str = ''
    logprob_tokens: tuple[int | str, ...] = ()
    json_schema: str = ''
    regex: str = ''
    choice: tuple[str, ...] = ()
    grammar: str = ''
    sampler_order: tuple[str, ...] = ()
    # -- end of the written fields --

    def __post_init__(self) -> None:
        for s in SETTINGS:
            # a row not yet written as a field takes its default, so that scripts/config_class.py can import this
            # module to write it (tests/test_config.py fails until it has)
            object.__setattr__(self, s.name, s.check(getattr(self, s.name, s.default)))
        if self.min_new_tokens > self.max_new_tokens:
            raise _fail("min_new_tokens", self.min_new_tokens, f"it must be <= max_new_tokens ({self.max_new_tokens})")
        for stage in self.sampler_order:
            if stage not in SAMPLER_STAGES:
                raise _fail("sampler_order", list(self.sampler_order),
                            f"{stage!r} is not a stage; it must list some of: {', '.join(SAMPLER_STAGES)}")
        if len(set(self.sampler_order)) != len(self.sampler_order):
            raise _fail("sampler_order", list(self.sampler_order), "each stage must appear at most once")
        if self.num_beams > 1 and (self.dry_multiplier or self.repetition_penalty_last_n):
            name = "dry_multiplier" if self.dry_multiplier else "repetition_penalty_last_n"
            raise _fail(name, getattr(self, name), "beams run through HF generate, which has no DRY or penalty "
                        "window: set it to 0 for beam configs, or num_beams=1")
        if self.p_less and self.p_less_norm:
            raise _fail("p_less_norm", self.p_less_norm, "p-less and p-less-norm are two thresholds of one stage: set "
                        "one of p_less and p_less_norm")
        if self.mirostat and self.adaptive_target >= 0:
            raise _fail("adaptive_target", self.adaptive_target, "Mirostat and adaptive-p both pick the token at the "
                        "end of the chain: turn one off (adaptive_target=-1 or mirostat=0)")
        if self.num_beams > 1 and self.guidance_scale != 1:
            raise _fail("guidance_scale", self.guidance_scale, "beams run through HF generate without decodelab's "
                        "guidance rows: set it to 1 for beam configs, or num_beams=1")
        check_constraint(self)  # at most one json_schema/regex/choice/grammar, and one that compiles
        if self.num_beams > 1 and self.samples:
            raise _fail("num_beams", self.num_beams,
                        "beams run without sampling here: set do_sample=false (or temperature=0), or num_beams=1")

    @property
    def samples(self) -> bool:
        """True when this config draws tokens at random (do_sample and a temperature above 0)."""
        return self.do_sample and self.temperature > 0

    @property
    def greedy(self) -> bool:
        """True when this config always takes the most likely (penalised) token, beams aside."""
        return not self.samples and self.num_beams == 1

    def changed_fields(self) -> set[str]:
        """Names of the fields whose value differs from the default."""
        return {s.name for s in SETTINGS if self._changed(s)}

    def summary(self) -> str:
        """One line for pane titles, e.g. ``T=0.7 p=0.9 k=off rep=1.1 seed=42`` (labels from SETTINGS)."""
        if self.num_beams > 1:
            parts = [f"beams={self.num_beams}"] + ([f"lp={self.length_penalty:g}"] if self.length_penalty != 1 else [])
        elif self.samples:
            parts = [f"T={self.temperature:g}", f"p={self.top_p:g}" if self.top_p < 1 else "p=off",
                     f"k={self.top_k}" if self.top_k else "k=off"]
            parts += [self._label(s) for s in SETTINGS if s.warper and s.label and self._changed(s)]
        else:
            parts = ["greedy"]
        parts += [self._label(s) for s in SETTINGS if not s.warper and s.label and self._changed(s)]
        if self.samples:
            parts.append(f"seed={self.seed}" if self.seed is not None else "seed=auto")
        return " ".join(parts)

    def _changed(self, s: Setting) -> bool:
        return getattr(self, s.name) != s.default

    def _label(self, s: Setting) -> str:
        value = getattr(self, s.name)
        assert s.label is not None  # summary() labels only the settings that have a label
        if s.name == "xtc_probability" and self.xtc_threshold > 0.5:
            return f"xtc=off(threshold {self.xtc_threshold:g} > 0.5)"  # said, not silently dropped
        if s.kind == "bool":
            return s.label
        if "{" in s.label:
            return s.label.format(v=value, c=self, n=len(value) if isinstance(value, tuple) else value)
        return f"{s.label}={value:g}"

    def to_dict(self, *, only_changed: bool = False) -> dict[str, Any]:
        """Plain data (lists for string lists, a table for logit_bias); with only_changed, the non-defaults."""
        keep = self.changed_fields() if only_changed else None
        out = {}
        for s in SETTINGS:
            if keep is not None and s.name not in keep:
                continue
            value = getattr(self, s.name)
            out[s.name] = logit_bias_dict(value) if s.kind == "bias" else list(value) if s.kind in ("strings", "tokens") \
                else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "config") -> DecodingConfig:
        """Build a config from plain data; unknown keys raise ConfigError with a did-you-mean hint."""
        unknown = [key for key in data if key not in SETTING]
        if unknown:
            raise unknown_key_error(unknown[0], where)
        return cls(**data)

    def replace(self, **changes: Any) -> DecodingConfig:
        """A validated copy with some fields changed."""
        unknown = [key for key in changes if key not in SETTING]
        if unknown:
            raise unknown_key_error(unknown[0], "config")
        return dataclasses.replace(self, **changes)


DEFAULTS = DecodingConfig()


def unknown_key_error(key: str, where: str) -> ConfigError:
    """ConfigError for an unknown field, suggesting the closest real one."""
    lowered = str(key).lower().replace("-", "_")  # TOP_K, top-k
    starts = [name for name in FIELD_NAMES if name.startswith(lowered)] if len(lowered) >= 4 else []
    close = (starts[:1] or difflib.get_close_matches(lowered, FIELD_NAMES, n=1, cutoff=0.6)  # "smoothing": the
             if lowered not in FIELD_NAMES else [lowered])  # table's first match, smoothing_factor
    hint = f" Did you mean {close[0]!r}?" if close else f" Known fields: {', '.join(FIELD_NAMES)}."
    return ConfigError(f"unknown key {key!r} in {where}.{hint}", field=str(key))


def logit_bias_dict(pairs: Iterable[tuple[int | str, float]]) -> dict[str, float]:
    """logit_bias as a TOML/JSON table: token ids as digit keys, texts as themselves.

    A text made only of digits would read back as a token id, so such texts are refused here.
    """
    out: dict[str, float] = {}
    for key, bias in pairs:
        if isinstance(key, str) and key.strip().isdigit():
            raise ConfigError(f"logit_bias text {key!r} is all digits and would read back as a token id; "
                              "bias its token id instead", field="logit_bias")
        out[str(key)] = bias
    return out


def effective_order(config: DecodingConfig) -> tuple[str, ...]:
    """The config's sampler_order, then every unlisted stage in its default place."""
    listed = tuple(config.sampler_order)
    return listed + tuple(name for name in SAMPLER_STAGES if name not in listed)
