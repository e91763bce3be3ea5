"""nginx_tls' usage filter (roles/nginx_tls/files/gpuserve_usage.js) in the real njs interpreter.

The njs CLI (Debian's ``njs`` package, the same njs release as nginx's module on Debian 12; installed
by tests/harness/setup.sh) runs the filter function against a stand-in for nginx's request object
that records what the filter passes on (r.sendBuffer) and the variables it sets. Responses are
vLLM's shapes: a streamed chat completion whose last chunk carries the usage, and a non-streamed
completion. Every split of the response into two buffers and byte-by-byte delivery are tried: the
filter must pass every byte on unchanged, in order, at once, and find the usage exactly once.
The filter inside live nginx (auth_request, usage log, accounting) is tested in
molecule/default/tests/test_edge_path.py.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

FILTER = pathlib.Path(__file__).resolve().parents[1].parent / "roles" / "nginx_tls" / "files" / "gpuserve_usage.js"

STREAM = "".join(
    "data: %s\n\n" % json.dumps(chunk, separators=(",", ":")) for chunk in [
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen7b",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "usage": None},
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen7b",
         "choices": [{"index": 0, "delta": {"content": "Hello \"usage\":{ there"}}], "usage": None},
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen7b",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": None},
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen7b", "choices": [],
         "usage": {"prompt_tokens": 1234, "total_tokens": 1290, "completion_tokens": 56}},
    ]) + "data: [DONE]\n\n"

PLAIN = json.dumps({
    "id": "cmpl-2", "object": "text_completion", "created": 1, "model": "tiny",
    "choices": [{"index": 0, "text": "x" * 5000, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 7, "total_tokens": 10007, "completion_tokens": 10000,
              "prompt_tokens_details": None},
}, separators=(",", ":"))

HARNESS = r"""
var cases = %(cases)s;
for (var i = 0; i < cases.length; i++) {
    tail = ''; model = '';
    var sent = [], sets = {};
    var r = {sendBuffer: function (d, f) { sent.push(d); }, variables: {}};
    ['gpuserve_prompt_tokens', 'gpuserve_completion_tokens', 'gpuserve_model'].forEach(function (k) {
        Object.defineProperty(r.variables, k, {set: function (v) { sets[k] = (sets[k] || []).concat([v]); }});
    });
    var parts = cases[i];
    for (var j = 0; j < parts.length; j++) {
        usage(r, parts[j], {last: j == parts.length - 1});
    }
    // one short line per case (the CLI's console output is not meant for megabytes)
    console.log(JSON.stringify({same: sent.join('') === parts.join(''), calls: sent.length, sets: sets}));
}
"""


def run_filter(cases: list[list[str]]) -> list[dict]:
    njs = shutil.which("njs")
    assert njs, "njs is not installed: tests/harness/setup.sh installs Debian's njs package"
    source = FILTER.read_text().replace("export default { usage };", "")
    script = source + HARNESS % {"cases": json.dumps(cases)}
    out = subprocess.run([njs, "-q", "-"], input=script, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr + out.stdout
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(cases), out.stdout[-2000:]
    return [json.loads(line) for line in lines]


def _check(result: dict, parts: int, prompt: str, completion: str, model: str) -> None:
    assert result["same"]  # every byte passed on, unchanged and in order
    assert result["calls"] == parts  # each buffer at once: nothing held back
    assert result["sets"]["gpuserve_prompt_tokens"][-1] == prompt
    assert result["sets"]["gpuserve_completion_tokens"][-1] == completion
    assert result["sets"]["gpuserve_model"] == [model]


@pytest.mark.parametrize("body, prompt, completion, model", [
    (STREAM, "1234", "56", "qwen7b"),
    (PLAIN, "7", "10000", "tiny"),
])
def test_every_two_buffer_split(body, prompt, completion, model):
    step = 1 if len(body) < 2000 else 7
    cases = [[body]] + [[body[:i], body[i:]] for i in range(1, len(body), step)]
    for case, result in zip(cases, run_filter(cases)):
        _check(result, len(case), prompt, completion, model)


def test_spaced_json():
    # json.dumps' default separators (", ", ": "), as servers other than vLLM write them
    body = json.dumps(json.loads(PLAIN))
    cases = [[body]] + [[body[:i], body[i:]] for i in range(len(body) - 300, len(body))]
    for case, result in zip(cases, run_filter(cases)):
        _check(result, len(case), "7", "10000", "tiny")


def test_byte_by_byte():
    cases = [list(STREAM)]
    _check(run_filter(cases)[0], len(STREAM), "1234", "56", "qwen7b")


def test_no_usage_sets_no_tokens():
    body = STREAM.split("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                        "\"model\":\"qwen7b\",\"choices\":[],", maxsplit=1)[0]
    result = run_filter([[body[:100], body[100:]]])[0]
    assert result["same"] and result["calls"] == 2
    assert "gpuserve_prompt_tokens" not in result["sets"]
