"""Issue 19 over HTTP: OpenAI's response_format (with the official SDK), llama.cpp's grammar and json_schema,
vLLM's guided_* fields and structured_outputs; requests with different constraints share one batch."""

from __future__ import annotations

import json
import re
import threading

import httpx
import jsonschema
import pytest

from decodelab.engine import DecodingConfig, generate_many
from serving import PROMPT, client, demo, error_of, server, wait_idle  # noqa: F401 - fixtures

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99},
                                          "ok": {"type": "boolean"}}, "required": ["n", "ok"]}


def test_response_format_json_schema_through_the_official_sdk(demo, client):
    r = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": PROMPT}], max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}})
    text = r.choices[0].message.content
    jsonschema.validate(json.loads(text), SCHEMA)
    assert r.choices[0].finish_reason == "stop"


def test_response_format_json_object_gives_an_object(client):
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=40, temperature=0,
                                  extra_body={"response_format": {"type": "json_object"}})
    assert isinstance(json.loads(r.choices[0].text), dict)


@pytest.mark.parametrize("body, check", [
    ({"grammar": 'root ::= "x = " [0-9] ";"'}, lambda t: re.fullmatch(r"x = [0-9];", t)),
    ({"json_schema": SCHEMA}, lambda t: jsonschema.validate(json.loads(t), SCHEMA) is None),
    ({"guided_choice": ["alpha", "beta"]}, lambda t: t in ("alpha", "beta")),
    ({"guided_regex": "[a-c]{3}"}, lambda t: re.fullmatch("[a-c]{3}", t)),
    ({"guided_json": json.dumps(SCHEMA)}, lambda t: jsonschema.validate(json.loads(t), SCHEMA) is None),
    ({"guided_grammar": 'root ::= "yes" | "no"'}, lambda t: t in ("yes", "no")),
    ({"structured_outputs": {"choice": ["up", "down"]}}, lambda t: t in ("up", "down")),
    ({"grammar_string": 'root ::= "ok"'}, lambda t: t == "ok"),
])
def test_every_dialect_s_constraint_field(server, body, check):
    r = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 40, "seed": 2,
                                                       "temperature": 0.8, **body}, timeout=60)
    assert r.status_code == 200, r.text
    assert check(r.json()["choices"][0]["text"])
    assert "X-Decodelab-Ignored" not in r.headers


@pytest.mark.parametrize("body, param, words", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format", "schema"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "json_object"),
    ({"grammar": 'root ::= ("a"'}, "grammar", "line 1"),
    ({"guided_json": '{"type": "object",'}, "guided_json", "not valid JSON"),
    ({"guided_regex": "a+", "guided_choice": ["a"]}, "guided_choice", "at most one constraint"),
    ({"structured_outputs": {"xml": "<a/>"}}, "structured_outputs", "not supported"),
    ({"json_schema": {"type": "object"}, "response_format": {"type": "json_object"}}, "json_schema", "same setting"),
])
def test_a_bad_constraint_is_a_400_naming_the_field_as_sent(server, body, param, words):
    r = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 5, **body}, timeout=30)
    assert r.status_code == 400 and error_of(r)["param"] == param and words in error_of(r)["message"], r.text


def test_requests_with_different_constraints_share_one_batch_and_match_alone(demo, server):
    assert wait_idle(server)
    bodies = [{"guided_choice": ["for", "while"]}, {"guided_regex": "[0-9]{4}"}, {"json_schema": SCHEMA}, {}]
    before, results = server.scheduler.forwards, [None] * len(bodies)

    def ask(i):
        results[i] = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 30, "seed": 4,
                                                                   "temperature": 0.7, **bodies[i]}, timeout=60)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    forwards = server.scheduler.forwards - before
    assert forwards < 60  # far fewer than the rows' 4 x up to 30 tokens one after another
    fields = [{"choice": ["for", "while"]}, {"regex": "[0-9]{4}"}, {"json_schema": SCHEMA}, {}]
    for r, f in zip(results, fields):
        alone = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=30, seed=4, do_sample=True,
                                                            temperature=0.7, **f)])[0]
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == alone.text
