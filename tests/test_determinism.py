"""Issue 34 item 2: `decodelab check determinism`: a seeded probe alone and among concurrent others, on the local
engines, on decodelab serve (both engines, through the remote client), and on a server that perturbs its output
when it is busy, which the check must catch."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from decodelab.cli.main import main
from decodelab.engine.backends.loading import ModelSpec, load_model
from decodelab.engine.experiments.determinism import check_determinism, compare
from serving import server  # noqa: F401 - fixtures


def test_the_local_engines_are_deterministic_under_batching(engine_model):
    report = check_determinism(engine_model, concurrency=4, rounds=2, max_new_tokens=12)
    assert report.deterministic and len(report.rounds) == 2
    assert all(r.others == 3 and r.tokens_alone == r.tokens_busy and r.max_logprob_difference < 1e-4
               for r in report.rounds)


def test_decodelab_serve_is_deterministic_under_concurrent_requests(server):
    remote = load_model(ModelSpec(path=server.url))
    report = check_determinism(remote, concurrency=4, rounds=2, max_new_tokens=12)
    assert report.deterministic, report.to_dict()


@pytest.fixture
def busy_server_perturbs(server, monkeypatch):
    """decodelab serve made non-deterministic the way the reported servers are: its logits change a little once
    several requests arrive together (from then on for two seconds: on the llama.cpp engine, which runs one request
    at a time, the probe may run last), never when a request comes alone."""
    import time

    from decodelab.engine.decoding import requests

    sample, scheduler, arrivals = requests.Group.sample, server.scheduler, []
    submit = scheduler.submit

    def counted_submit(job):
        arrivals.append(time.monotonic())
        return submit(job)

    def perturbed_sample(self, logits):
        now = time.monotonic()
        if sum(now - t < 2.0 for t in arrivals) > 1:
            logits = logits + 0.5 * torch.randn_like(logits)
        return sample(self, logits)

    monkeypatch.setattr(scheduler, "submit", counted_submit)
    monkeypatch.setattr(requests.Group, "sample", perturbed_sample)


def test_a_server_that_changes_under_load_is_caught(server, busy_server_perturbs):
    remote = load_model(ModelSpec(path=server.url))
    report = check_determinism(remote, concurrency=4, rounds=2, max_new_tokens=16)
    assert not report.deterministic
    parted = [r for r in report.rounds if not r.equal]
    assert parted and all(r.first_difference is not None and r.first_difference < 16 for r in parted)
    result = CliRunner().invoke(main, ["check", "determinism", "--model", server.url, "--concurrency", "4",
                                       "--rounds", "1", "--max-new-tokens", "16", "--strict", "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["deterministic"] is False and doc["concurrency"] == 4 and doc["rounds"][0]["equal"] is False


def test_the_command_prints_a_table_and_a_verdict():
    result = CliRunner().invoke(main, ["check", "determinism", "--model", "demo", "--concurrency", "3", "--rounds",
                                       "1", "--max-new-tokens", "6", "--strict"])
    assert result.exit_code == 0, result.output
    assert "tokens equal" in result.stdout and "deterministic: the probe gave the same tokens" in result.stdout


def test_compare_finds_the_first_difference_and_the_logprob_gap(demo):
    from decodelab.engine import DecodingConfig, generate_many

    a, b = generate_many(demo, "The for", [DecodingConfig(do_sample=True, seed=1, max_new_tokens=8),
                                           DecodingConfig(do_sample=True, seed=2, max_new_tokens=8)])
    same = compare(1, 0, a, a)
    assert same.equal and same.first_difference is None and same.max_logprob_difference == 0
    first = next(i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y)
    other = compare(1, 0, a, b)
    assert not other.equal and other.first_difference == first


def test_a_probe_the_server_cut_short_is_told_apart_from_other_tokens(demo):
    """llama-cpp-python's server stops a running request for a new one: the busy probe has fewer tokens, not
    others, and the verdict says how to start that server for the check."""
    import dataclasses

    from decodelab.cli.check_cmd import verdict
    from decodelab.engine import DecodingConfig, generate_many
    from decodelab.engine.experiments.determinism import Report

    (alone,) = generate_many(demo, "The for", [DecodingConfig(do_sample=True, seed=1, max_new_tokens=8)])
    cut = dataclasses.replace(alone, steps=alone.steps[:1], token_ids=alone.token_ids[:1], stop_reason="error",
                              extra={"error": "the stream ended before the server finished"})
    r = compare(1, 3, alone, cut)
    assert not r.equal and r.cut_short and r.first_difference == 1 and r.ended_busy == "error"
    assert "--interrupt_requests false" in verdict(Report("x", 4, [r]))
    assert not compare(1, 3, alone, alone).cut_short
