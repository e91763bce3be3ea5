#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_health
short_description: Wait for a vLLM server to be healthy, check what it serves and warm it up
description:
  - Polls vLLM's C(GET /health) until it answers 200 or O(timeout) passes.
  - While waiting, when O(unit) is set, watches the systemd unit. When the engine dies during
    start-up (the unit failed, is waiting to auto-restart, restarted, or its main process changed)
    the module fails at once with the root cause read from the journal, instead of waiting for
    the deadline.
  - Then reads C(GET /v1/models) and checks that O(served_model_name) is served, with
    O(expected_max_model_len) when given.
  - Then sends O(warmup_requests) sequential generation requests to the model and returns their
    latencies, so that the first real client does not pay for lazy initialisation.
  - Never changes anything on the target.
version_added: "0.1.0"
author:
  - gpuserve.vllm contributors (@gpuserve)
options:
  url:
    description:
      - Root URL of the vLLM server, without C(/v1) (a trailing C(/v1) is ignored).
      - Requests to loopback addresses do not go through the proxy set in the environment.
    type: str
    default: http://127.0.0.1:8000
  api_key:
    description:
      - "API key the server was started with (sent as C(Authorization: Bearer <key>))."
      - Needed for O(served_model_name), O(expected_max_model_len) and warm-up when the server
        has a key. C(/health) and C(/version) need none.
      - An empty string means no key.
      - Mutually exclusive with O(api_key_file).
    type: str
  api_key_file:
    description:
      - Path, on the target, to a file that holds the API key, either as its only line or as
        a C(VLLM_API_KEY=) line of an environment file (as written for the systemd unit).
      - Mutually exclusive with O(api_key).
    type: path
  served_model_name:
    description:
      - Model name that must be listed by C(/v1/models). The module fails, listing the names
        served, when it is missing.
      - Warm-up requests go to this model; when not set, to the first model listed.
    type: str
  expected_max_model_len:
    description:
      - Context length the served model must report (C(max_model_len) in C(/v1/models)).
      - Not checked when not set.
    type: int
  unit:
    description:
      - systemd unit that runs the server (for example C(vllm-main.service)).
      - When set, the unit is watched while waiting, and its journal is returned when the
        engine dies or the deadline passes. Needs C(systemctl) and C(journalctl) on the target,
        and read access to the journal.
      - When not set, only the HTTP endpoint is polled.
    type: str
  timeout:
    description:
      - Seconds to wait, from the start of the module, for C(/health) to answer 200.
      - Loading a large model (download, weights, C(torch.compile), CUDA graphs) can take many
        minutes. The gpuserve.vllm.vllm_engine role sets it from C(vllm_engine_health_timeout).
    type: int
    default: 900
  interval:
    description:
      - Seconds between two polls of C(/health).
    type: float
    default: 2
  warmup_requests:
    description:
      - Number of sequential warm-up requests sent once the server is healthy. V(0) disables
        warm-up.
    type: int
    default: 2
  warmup_kind:
    description:
      - V(completion) calls C(/v1/completions), which every model supports.
      - V(chat) calls C(/v1/chat/completions), which fails on models without a chat template.
    type: str
    choices: [chat, completion]
    default: completion
  warmup_prompt:
    description:
      - Prompt (or user message) of the warm-up requests.
    type: str
    default: Hello
  warmup_max_tokens:
    description:
      - C(max_tokens) of each warm-up request.
    type: int
    default: 8
  journal_lines:
    description:
      - Number of journal lines of O(unit) read when the engine dies or the deadline passes.
    type: int
    default: 60
  validate_certs:
    description:
      - Verify the server's TLS certificate when O(url) is C(https).
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of CA certificates used to verify the server's certificate.
      - The system's CA store is used when not set.
    type: path
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: partial
    details:
      - In check mode the module sends no request and reads no file, and returns RV(skipped=true).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - The module never changes the target; RV(changed) is always V(false).
  - The API key is never returned or logged. A key read from O(api_key_file) is masked in the
    output like O(api_key).
  - "The engine is considered dead when C(ActiveState) is C(failed), C(SubState) is
    C(auto-restart), C(NRestarts) grew or C(ExecMainPID) changed since the module started.
    A unit that is C(inactive) fails the module too: start it first."
  - Runs on the target. Use O(url) to reach the server from there (usually the loopback address).
seealso:
  - name: vLLM OpenAI-compatible server
    description: The HTTP API this module talks to.
    link: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
"""

EXAMPLES = r"""
- name: Wait for the engine, check its model and warm it up
  gpuserve.vllm.vllm_health:
    url: http://127.0.0.1:8000
    api_key: "{{ vllm_engine_api_key }}"
    served_model_name: qwen2.5-7b-instruct
    expected_max_model_len: 8192
    unit: vllm-main.service
    timeout: 1800
  register: health

- name: Show the warm-up latencies
  ansible.builtin.debug:
    msg: "ready after {{ health.time_to_healthy }} s, warm-up {{ health.warmup_latencies_ms }} ms"

- name: Read the key from the unit's environment file, warm up through the chat endpoint
  gpuserve.vllm.vllm_health:
    api_key_file: /etc/vllm/main.env
    warmup_kind: chat
    warmup_requests: 3

- name: Only wait for /health (no key needed), at most 10 minutes
  gpuserve.vllm.vllm_health:
    url: https://llm.example.com
    ca_path: /etc/ssl/certs/internal-ca.pem
    warmup_requests: 0
    timeout: 600
"""

RETURN = r"""
changed:
  description: Always V(false), the module changes nothing.
  type: bool
  returned: always
  sample: false
skipped:
  description: V(true) in check mode, where no request is made.
  type: bool
  returned: check mode
  sample: true
msg:
  description: What was done (or why nothing was, in check mode).
  type: str
  returned: always
  sample: vLLM at http://127.0.0.1:8000 is healthy after 41.2 s, serves qwen2.5-7b-instruct, 2 warm-up requests
healthy:
  description: V(true) when C(/health) answered 200.
  type: bool
  returned: success, not in check mode
  sample: true
time_to_healthy:
  description: Seconds from the start of the module to the first 200 from C(/health).
  type: float
  returned: success, not in check mode
  sample: 41.237
models:
  description:
    - Ids of the models listed by C(/v1/models).
    - Empty when the list could not be read and was not needed (no O(served_model_name),
      O(expected_max_model_len) or warm-up).
  type: list
  elements: str
  returned: success, not in check mode
  sample: [qwen2.5-7b-instruct]
model:
  description:
    - The model checked and warmed up (O(served_model_name), or the first listed).
    - V(null) when no model is listed.
  type: str
  returned: success, not in check mode
  sample: qwen2.5-7b-instruct
max_model_len:
  description: C(max_model_len) reported for RV(model); V(null) when not reported.
  type: int
  returned: success, not in check mode
  sample: 8192
version:
  description: vLLM version from C(/version); V(null) when it cannot be read.
  type: str
  returned: success, not in check mode
  sample: 0.22.0
warmup_latencies_ms:
  description: Latency of each warm-up request, in milliseconds, in order.
  type: list
  elements: float
  returned: success, not in check mode
  sample: [812.4, 35.1]
url:
  description: The server URL polled.
  type: str
  returned: always
  sample: http://127.0.0.1:8000
journal:
  description: Last O(journal_lines) lines of the unit's journal.
  type: list
  elements: str
  returned: failure, when O(unit) is set and the engine died or the deadline passed
  sample: ["ValueError: ... larger than the available KV cache memory ...", "RuntimeError: Engine core initialization failed. See root cause above."]
root_cause:
  description: The lines of RV(journal) that explain why the engine died (also in RV(msg)).
  type: list
  elements: str
  returned: failure, when O(unit) is set and the engine died
  sample: ["ValueError: ... larger than the available KV cache memory ..."]
unit_state:
  description: The unit's C(ActiveState), C(SubState), C(NRestarts), C(ExecMainStatus), C(ExecMainPID) and C(MainPID).
  type: dict
  returned: failure, when O(unit) is set and the engine died, the unit is not started or the deadline passed
  sample: {"ActiveState": "failed", "SubState": "failed", "NRestarts": 0, "ExecMainStatus": 1, "ExecMainPID": 4242, "MainPID": 0}
"""

import re
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.gpuserve.vllm.plugins.module_utils.systemd_unit import (
    SystemdUnitError,
    find_root_cause,
    journal_tail,
    unit_state,
)
from ansible_collections.gpuserve.vllm.plugins.module_utils.vllm_api import (
    VllmApiError,
    VllmClient,
    read_api_key_file,
)

# Longest a single /health request may take: vLLM binds its port early, so during
# start-up a connection can be accepted and then left unanswered.
_HEALTH_REQUEST_TIMEOUT = 5.0
_API_REQUEST_TIMEOUT = 120.0
_TIMEOUT_HINT = ('If the model is just slow to load (download, weights, compilation, CUDA graphs), '
                 'raise `timeout` (role variable vllm_engine_health_timeout).')


def _describe_state(state: dict[str, t.Any]) -> str:
    parts = ['%s/%s' % (state.get('ActiveState'), state.get('SubState'))]
    if state.get('ExecMainStatus') not in (None, 0):
        parts.append('exit status %s' % state['ExecMainStatus'])
    if state.get('NRestarts'):
        parts.append('%s restarts' % state['NRestarts'])
    return ', '.join(parts)


def engine_died(baseline: dict[str, t.Any], current: dict[str, t.Any]) -> str | None:
    """Why the unit's engine is considered dead, or None while it may still come up."""
    active = current.get('ActiveState')
    if active == 'failed':
        return 'unit failed'
    if current.get('SubState') == 'auto-restart':
        return 'engine exited, unit waiting to restart it'
    before, now = baseline.get('NRestarts'), current.get('NRestarts')
    if before is not None and now is not None and now > before:
        return 'unit restarted the engine %d time(s)' % (now - before)
    before, now = baseline.get('ExecMainPID'), current.get('ExecMainPID')
    if before and now and now != before:
        return 'engine restarted (main PID %s -> %s)' % (before, now)
    if active == 'inactive':
        return 'unit stopped'
    return None


class HealthCheck:
    def __init__(self, module: AnsibleModule, started: float) -> None:
        self.module = module
        self.params = module.params
        self.started = started
        self.unit = module.params['unit']
        self.systemctl: str | None = None
        self.journalctl: str | None = None

    # -- systemd -----------------------------------------------------------------

    def _run(self, args: list[str]) -> tuple[int, str, str]:
        return self.module.run_command(args, environ_update={'LC_ALL': 'C', 'SYSTEMD_COLORS': '0'})

    def resolve_tools(self) -> None:
        self.systemctl = self.module.get_bin_path('systemctl')
        self.journalctl = self.module.get_bin_path('journalctl')
        if not self.systemctl or not self.journalctl:
            self.module.fail_json(
                msg='unit=%s is set but systemctl/journalctl were not found on the target: '
                    'unset unit on hosts without systemd' % self.unit,
                url=self.params['url'])

    def state(self) -> dict[str, t.Any]:
        try:
            return unit_state(self._run, self.unit, systemctl=self.systemctl or 'systemctl')
        except SystemdUnitError as exc:
            self.module.fail_json(msg='cannot read the state of unit %s: %s' % (self.unit, to_native(exc)),
                                  url=self.params['url'])
            raise  # not reached: fail_json exits

    def journal(self) -> list[str]:
        try:
            return journal_tail(self._run, self.unit, self.params['journal_lines'],
                                journalctl=self.journalctl or 'journalctl')
        except SystemdUnitError as exc:
            return ['(could not read the journal: %s)' % to_native(exc)]

    # -- steps -------------------------------------------------------------------

    def wait_healthy(self, client: VllmClient) -> float:
        """Poll /health; return seconds from module start to the first 200."""
        timeout = self.params['timeout']
        interval = self.params['interval']
        deadline = self.started + timeout
        baseline = None
        state = None
        while True:
            remaining = deadline - time.monotonic()
            try:
                healthy = client.health(timeout=max(0.5, min(_HEALTH_REQUEST_TIMEOUT, remaining)))
            except VllmApiError as exc:
                self.module.fail_json(msg='vLLM at %s cannot be health-checked: %s' % (client.base_url, to_native(exc)),
                                      url=self.params['url'])
            if healthy:
                return time.monotonic() - self.started
            if self.unit:
                state = self.state()
                if baseline is None:
                    baseline = state
                    if state.get('ActiveState') == 'inactive':
                        self.module.fail_json(
                            msg='vLLM unit %s is not running (%s): start it first '
                                '(systemctl start %s)' % (self.unit, _describe_state(state), self.unit),
                            unit_state=state, url=self.params['url'])
                why = engine_died(baseline, state)
                if why:
                    lines = self.journal()
                    cause = find_root_cause(lines)
                    self.module.fail_json(
                        msg='vLLM unit %s died while starting (%s; %s): %s' % (
                            self.unit, _describe_state(state), why, ' | '.join(cause) or '(journal is empty)'),
                        journal=lines, root_cause=cause, unit_state=state, url=self.params['url'])
            now = time.monotonic()
            if now >= deadline:
                self.fail_deadline(client, now - self.started, state)
            time.sleep(max(0.0, min(interval, deadline - now)))

    def fail_deadline(self, client: VllmClient, waited: float, state: dict[str, t.Any] | None) -> None:
        msg = 'vLLM at %s did not become healthy within %.1f s (timeout=%d; last error: %s).' % (
            client.base_url, waited, self.params['timeout'], client.last_health_error or 'none')
        result: dict[str, t.Any] = {'url': self.params['url']}
        if self.unit:
            lines = self.journal()
            result.update(journal=lines, unit_state=state)
            msg += ' Unit %s is %s.' % (self.unit, _describe_state(state or {}))
            if lines:
                msg += ' Last journal line: %s.' % lines[-1]
        msg += ' ' + _TIMEOUT_HINT
        self.module.fail_json(msg=msg, **result)

    def check_models(self, client: VllmClient) -> tuple[list[str], str | None, int | None]:
        needed = (self.params['served_model_name'] or self.params['expected_max_model_len'] is not None
                  or self.params['warmup_requests'] > 0)
        try:
            entries = client.models()
        except VllmApiError as exc:
            if not needed:
                # only /health was asked for: the list is informative (it may need a key)
                return [], None, None
            self.module.fail_json(msg='vLLM at %s is healthy but listing its models failed: %s' % (
                client.base_url, to_native(exc)), url=self.params['url'])
        ids = [str(entry.get('id')) for entry in entries if entry.get('id') is not None]
        wanted = self.params['served_model_name']
        if wanted:
            if wanted not in ids:
                self.module.fail_json(
                    msg='vLLM at %s does not serve %r; it serves: %s' % (
                        client.base_url, wanted, ', '.join(ids) or '(no model)'),
                    models=ids, url=self.params['url'])
            model = wanted
        else:
            model = ids[0] if ids else None
        max_len = None
        for entry in entries:
            if entry.get('id') == model:
                value = entry.get('max_model_len')
                max_len = value if isinstance(value, int) and not isinstance(value, bool) else None
                break
        expected = self.params['expected_max_model_len']
        if expected is not None and model is not None and max_len != expected:
            self.module.fail_json(
                msg='vLLM at %s serves %s with max_model_len %s, expected %d' % (
                    client.base_url, model, 'not reported' if max_len is None else max_len, expected),
                models=ids, max_model_len=max_len, url=self.params['url'])
        return ids, model, max_len

    def warmup(self, client: VllmClient, model: str | None) -> list[float]:
        count = self.params['warmup_requests']
        if count == 0:
            return []
        if model is None:
            self.module.fail_json(msg='vLLM at %s lists no model to warm up' % client.base_url,
                                  models=[], url=self.params['url'])
        kind = self.params['warmup_kind']
        latencies: list[float] = []
        for number in range(1, count + 1):
            try:
                latencies.append(round(client.warmup(model, kind, self.params['warmup_prompt'],
                                                     self.params['warmup_max_tokens']), 3))
            except VllmApiError as exc:
                msg = 'warm-up request %d/%d (%s) to model %s failed: %s' % (number, count, kind, model, to_native(exc))
                if kind == 'chat' and exc.status == 400:
                    msg += ' (a model without a chat template only supports warmup_kind=completion)'
                self.module.fail_json(msg=msg, warmup_latencies_ms=latencies, url=self.params['url'])
        return latencies


def main() -> None:
    started = time.monotonic()
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str', default='http://127.0.0.1:8000'),
            api_key=dict(type='str', no_log=True),
            api_key_file=dict(type='path'),
            served_model_name=dict(type='str'),
            expected_max_model_len=dict(type='int'),
            unit=dict(type='str'),
            timeout=dict(type='int', default=900),
            interval=dict(type='float', default=2),
            warmup_requests=dict(type='int', default=2),
            warmup_kind=dict(type='str', choices=['chat', 'completion'], default='completion'),
            warmup_prompt=dict(type='str', default='Hello'),
            warmup_max_tokens=dict(type='int', default=8, no_log=False),
            journal_lines=dict(type='int', default=60),
            validate_certs=dict(type='bool', default=True),
            ca_path=dict(type='path'),
        ),
        mutually_exclusive=[('api_key', 'api_key_file')],
        supports_check_mode=True,
    )
    params = module.params
    url = params['url']

    for name, minimum in (('timeout', 0), ('warmup_requests', 0), ('warmup_max_tokens', 1), ('journal_lines', 1)):
        if params[name] < minimum:
            module.fail_json(msg='%s must be at least %d, got %d' % (name, minimum, params[name]), url=url)
    if params['interval'] <= 0:
        module.fail_json(msg='interval must be greater than 0, got %s' % params['interval'], url=url)
    if not re.match(r'^https?://', url):
        module.fail_json(msg='url must start with http:// or https://, got %s' % url, url=url)

    if module.check_mode:
        module.exit_json(changed=False, skipped=True, url=url,
                         msg='check mode: no request was made to vLLM at %s' % url)

    api_key = params['api_key'] or None
    if params['api_key_file']:
        try:
            api_key = read_api_key_file(params['api_key_file'])
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            module.fail_json(msg='cannot read the API key from %s: %s' % (
                params['api_key_file'], to_native(getattr(exc, 'strerror', None) or exc)), url=url)
        if not api_key:
            module.fail_json(msg='the API key in %s is empty' % params['api_key_file'], url=url)
        module.no_log_values.add(api_key)

    check = HealthCheck(module, started)
    if check.unit:
        check.resolve_tools()

    client = VllmClient(url, api_key=api_key, timeout=_API_REQUEST_TIMEOUT,
                        validate_certs=params['validate_certs'], ca_path=params['ca_path'])
    time_to_healthy = check.wait_healthy(client)
    version = client.version()
    ids, model, max_len = check.check_models(client)
    latencies = check.warmup(client, model)

    msg = 'vLLM at %s is healthy after %.1f s' % (url, time_to_healthy)
    if model:
        msg += ', serves %s' % model
    msg += ', %d warm-up request(s)' % len(latencies)
    module.exit_json(
        changed=False,
        healthy=True,
        msg=msg,
        time_to_healthy=round(time_to_healthy, 3),
        models=ids,
        model=model,
        max_model_len=max_len,
        version=version,
        warmup_latencies_ms=latencies,
        url=url,
    )


if __name__ == '__main__':
    main()
