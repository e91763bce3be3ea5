#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: litellm_key
short_description: Manage a virtual key of a LiteLLM proxy
description:
  - Creates, updates, rotates and deletes a LiteLLM virtual key through the proxy's key
    management endpoints (C(/key/generate), C(/key/update), C(/key/{key}/regenerate),
    C(/key/delete), C(/key/list), C(/key/info)).
  - The key is identified by O(key_alias). LiteLLM never returns a key's secret value after
    it was created, so the alias is the only stable handle. The alias must be unique on the proxy.
  - "When the key is created (or rotated with O(regenerate)) its secret value is returned
    B(once), in RV(key). Set C(no_log: true) on the task and store the value at once, for
    example in Ansible Vault or a secret manager: later runs cannot read it back."
  - Only the options that are set are managed. An option left unset (V(null)) is neither
    compared nor sent, so values set by other means are kept. Only the fields that differ
    are sent to C(/key/update); when nothing differs nothing is sent and RV(changed) is V(false).
  - Virtual keys need the proxy to run with a database (PostgreSQL); see the
    gpuserve.vllm.litellm_gateway role.
  - The same endpoints are served by gpuserve-keyd, the key service of litellm_gateway's default
    C(edge) data path (same URL, C(http://127.0.0.1:4000), and master key). It accepts the options of
    this module; O(models) and O(max_parallel_requests) are stored there but not enforced (see the
    role's README).
version_added: "0.2.0"
author:
  - gpuserve.vllm contributors (@gpuserve)
options:
  url:
    description:
      - Root URL of the LiteLLM proxy (a trailing C(/v1) is ignored).
      - Requests to loopback addresses do not go through the proxy set in the environment.
    type: str
    default: http://127.0.0.1:4000
  master_key:
    description:
      - "Master key of the proxy (C(LITELLM_MASTER_KEY)), sent as C(Authorization: Bearer <key>) only."
      - One of O(master_key) and O(master_key_file) is required; they are mutually exclusive.
    type: str
  master_key_file:
    description:
      - Path, on the target, to a file that holds the master key, either as its only line or as
        a C(LITELLM_MASTER_KEY=) line of an environment file.
      - One of O(master_key) and O(master_key_file) is required; they are mutually exclusive.
    type: path
  key_alias:
    description:
      - Alias that identifies the key. Keys cannot be read back, so the module finds the key by
        this alias; it fails when several keys share it.
    type: str
    required: true
  state:
    description:
      - V(present) creates the key when no key has O(key_alias) and updates the fields that differ.
      - V(absent) deletes the key when it exists.
    type: str
    choices: [present, absent]
    default: present
  models:
    description:
      - Model names the key may call. An empty list means all models.
      - Compared as a set (order does not matter).
    type: list
    elements: str
  max_budget:
    description:
      - Maximum spend of the key, in USD.
    type: float
  budget_duration:
    description:
      - Period after which the key's spend is reset, for example V(30d), V(1h).
    type: str
  soft_budget:
    description:
      - Spend, in USD, at which LiteLLM sends a budget alert (the key keeps working).
    type: float
  rpm_limit:
    description:
      - Requests per minute allowed to the key.
    type: int
  tpm_limit:
    description:
      - Tokens per minute allowed to the key.
    type: int
  max_parallel_requests:
    description:
      - Requests the key may have in flight at once.
    type: int
  duration:
    description:
      - How long the key stays valid, for example V(30d); unset means no expiry.
      - Only used when the key is created or regenerated. It is not compared with the existing
        key (LiteLLM stores the resulting expiry date, not the duration), so changing it on an
        existing key changes nothing until O(regenerate=true).
    type: str
  metadata:
    description:
      - Metadata of the key, compared as a whole with the key's metadata.
      - Keys that LiteLLM itself keeps in the metadata (C(tags), C(guardrails), C(model_rpm_limit)...)
        are ignored in the comparison unless set here, and kept on update.
    type: dict
  team_id:
    description:
      - Team the key belongs to.
    type: str
  user_id:
    description:
      - User the key belongs to.
    type: str
  regenerate:
    description:
      - When V(true) and the key exists, rotate it with C(/key/{key}/regenerate). The old value stops
        working, the new one is returned in RV(key) and the fields that differ are applied at the
        same time. The task then reports a change on every run, so set it only when a rotation is
        wanted (for example from an extra variable).
      - When the key does not exist it is created.
      - Regenerating virtual keys is a LiteLLM Enterprise feature (C(LITELLM_LICENSE)).
    type: bool
    default: false
  validate_certs:
    description:
      - Verify the proxy's TLS certificate when O(url) is C(https).
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the proxy's certificate.
    type: path
  timeout:
    description:
      - Timeout of each HTTP request, in seconds.
    type: int
    default: 30
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - In check mode only C(/key/list) and C(/key/info) are called; no endpoint that writes is.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - The master key is never returned or logged, also on failure. A key read from
    O(master_key_file) is masked in the output like O(master_key).
  - HTTP errors from LiteLLM are reported with their status (RV(status)) and LiteLLM's message.
  - Runs on the target. Use O(url) to reach the proxy from there (usually the loopback address).
  - Follows the key endpoints of LiteLLM 1.108.7.
seealso:
  - name: LiteLLM virtual keys
    description: LiteLLM's documentation of virtual keys.
    link: https://docs.litellm.ai/docs/proxy/virtual_keys
"""

EXAMPLES = r"""
- name: Create the key of the chat application (the value is returned only now)
  gpuserve.vllm.litellm_key:
    url: http://127.0.0.1:4000
    master_key: "{{ vault_litellm_master_key }}"
    key_alias: chat-app
    models: [qwen2.5-7b-instruct]
    max_budget: 50
    budget_duration: 30d
    rpm_limit: 120
    metadata:
      owner: team-chat
  no_log: true
  register: chat_key

- name: Store the new key in a vault-encrypted file on the controller
  ansible.builtin.copy:
    content: "{{ {'chat_app_litellm_key': chat_key.key} | to_nice_yaml }}"
    dest: "{{ inventory_dir }}/group_vars/all/chat_app_key.vault.yml"
    mode: "0600"
  delegate_to: localhost
  no_log: true
  when: chat_key.key is defined
  # then: ansible-vault encrypt group_vars/all/chat_app_key.vault.yml

- name: Raise the rate limit, reading the master key from the gateway's environment file
  gpuserve.vllm.litellm_key:
    master_key_file: /etc/litellm/litellm.env
    key_alias: chat-app
    rpm_limit: 600

- name: Rotate the key on demand (-e rotate_chat_key=true)
  gpuserve.vllm.litellm_key:
    master_key: "{{ vault_litellm_master_key }}"
    key_alias: chat-app
    regenerate: true
    duration: 90d
  no_log: true
  register: rotated
  when: rotate_chat_key | default(false) | bool

- name: Delete the key
  gpuserve.vllm.litellm_key:
    master_key: "{{ vault_litellm_master_key }}"
    key_alias: chat-app
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the key was (or, in check mode, would be) created, updated, rotated or deleted.
  type: bool
  returned: always
  sample: true
msg:
  description: What was done.
  type: str
  returned: always
  sample: updated key chat-app (rpm_limit)
key:
  description:
    - The secret value of the key (C(sk-...)). B(Returned only when the key was created or
      regenerated), never afterwards and never in check mode.
    - Set C(no_log) on the task and store it at once (Ansible Vault, a secret manager).
  type: str
  returned: when the key was created or regenerated
  sample: sk-1b2c3d4e5f6a7b8c9d0e
token:
  description:
    - Hash (sha256) of the key, LiteLLM's id of the key. Not a secret; changes on regeneration.
    - V(null) when the key does not exist (or is about to be created, in check mode).
  type: str
  returned: always
  sample: 8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4
key_alias:
  description: The alias of the key.
  type: str
  returned: always
  sample: chat-app
diff:
  description: The managed fields before and after (only the options that are set).
  type: dict
  returned: always
  sample: {"before": {"rpm_limit": 120}, "after": {"rpm_limit": 600}}
key_info:
  description:
    - Non-secret fields of the key as LiteLLM reports them (C(token), C(key_alias), C(key_name)
      (the abbreviated key), C(models), C(max_budget), C(soft_budget), C(spend), C(expires)...).
    - Empty when the key does not exist.
  type: dict
  returned: always
  sample: {"key_alias": "chat-app", "key_name": "sk-...9d0e", "models": ["qwen2.5-7b-instruct"], "rpm_limit": 600}
status:
  description: HTTP status of the LiteLLM request that failed; V(null) when no HTTP answer came back.
  type: int
  returned: failure
  sample: 401
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.gpuserve.vllm.plugins.module_utils.litellm_api import (
    MANAGED_FIELDS,
    LitellmApiError,
    LitellmClient,
    compute_changes,
    key_info,
    read_master_key_file,
    update_body,
)

_DB_WORDS = ('prisma', 'database', 'not connected to db', 'db not connected')


def _hint(exc: LitellmApiError, url: str, regenerate: bool) -> str:
    text = exc.message.lower()
    if exc.status is None:
        return ('Is the LiteLLM gateway running at %s? Check `url`, and `validate_certs`/`ca_path` '
                'for https.' % url)
    if exc.status == 401:
        return 'Check `master_key` (or `master_key_file`): it must be the proxy\'s LITELLM_MASTER_KEY.'
    if any(word in text for word in _DB_WORDS):
        return ('Virtual keys need a database: run the proxy with a PostgreSQL DATABASE_URL '
                '(see the gpuserve.vllm.litellm_gateway role).')
    if exc.status == 403:
        return 'The key used may not manage keys: use the proxy\'s master key.'
    if regenerate and 'enterprise' in text:
        return ('Regenerating keys needs a LiteLLM Enterprise license (LITELLM_LICENSE); without one, '
                'delete the key (state=absent) and create it again.')
    if exc.status == 422:
        return 'LiteLLM rejected the request: check the option values.'
    if exc.status >= 500:
        return 'The proxy failed; its journal has the details.'
    return ''


class KeyManager:
    def __init__(self, module: AnsibleModule, client: LitellmClient) -> None:
        self.module = module
        self.params = module.params
        self.client = client
        self.alias: str = module.params['key_alias']
        self.desired = {field: module.params[field] for field in MANAGED_FIELDS}

    def fail(self, exc: LitellmApiError, action: str) -> None:
        hint = _hint(exc, self.client.base_url, self.params['regenerate'])
        msg = 'litellm_key %s: cannot %s: %s' % (self.alias, action, to_native(exc))
        if hint:
            msg += ' ' + hint
        self.module.fail_json(msg=self.client.scrub(msg), status=exc.status, key_alias=self.alias)

    def lookup(self) -> dict[str, t.Any] | None:
        try:
            row = self.client.find_by_alias(self.alias)
            if row is not None and row.get('token'):
                info = self.client.info(row['token'])
                row = dict(row, **{k: v for k, v in info.items() if k != 'key'})
        except LitellmApiError as exc:
            self.fail(exc, 'look the key up')
            raise  # not reached: fail_json exits
        return row

    def absent(self, row: dict[str, t.Any] | None) -> dict[str, t.Any]:
        if row is None:
            return dict(changed=False, msg='key %s is absent' % self.alias, token=None,
                        diff=dict(before={}, after={}), key_info={})
        token = row.get('token')
        before = {'key_alias': self.alias}
        before.update(compute_changes(row, self.desired)[1])
        result = dict(changed=True, token=token, diff=dict(before=before, after={}), key_info=key_info(row))
        if self.module.check_mode:
            result['msg'] = 'would delete key %s' % self.alias
            return result
        try:
            self.client.delete(token)
        except LitellmApiError as exc:
            self.fail(exc, 'delete the key')
        result['msg'] = 'deleted key %s' % self.alias
        return result

    def create(self) -> dict[str, t.Any]:
        changes, dummy, after = compute_changes(None, self.desired)
        after = dict(key_alias=self.alias, **after)
        result: dict[str, t.Any] = dict(changed=True, token=None, diff=dict(before={}, after=after), key_info={})
        if self.module.check_mode:
            result['msg'] = 'would create key %s' % self.alias
            return result
        body = dict(changes, key_alias=self.alias)
        if self.params['duration'] is not None:
            body['duration'] = self.params['duration']
        try:
            answer = self.client.generate(body)
        except LitellmApiError as exc:
            self.fail(exc, 'create the key')
            raise  # not reached
        token = answer.get('token_id') or answer.get('token')
        merged = dict(answer, token=token)
        if 'soft_budget' in changes:
            merged['soft_budget'] = changes['soft_budget']
        result.update(key=answer['key'], token=token, key_info=key_info(merged),
                      msg='created key %s (store the returned key now: it cannot be read again)' % self.alias)
        return result

    def present(self, row: dict[str, t.Any] | None) -> dict[str, t.Any]:
        if row is None:
            return self.create()
        token = row.get('token')
        changes, before, after = compute_changes(row, self.desired)
        diff = dict(before=before, after=after)
        if self.params['regenerate']:
            return self.regenerate(row, changes, diff)
        if not changes:
            return dict(changed=False, token=token, diff=diff, key_info=key_info(row),
                        msg='key %s is up to date' % self.alias)
        names = ', '.join(sorted(changes))
        result = dict(changed=True, token=token, diff=diff)
        if self.module.check_mode:
            result.update(key_info=key_info(row), msg='would update key %s (%s)' % (self.alias, names))
            return result
        try:
            answer = self.client.update(token, update_body(row, changes))
        except LitellmApiError as exc:
            self.fail(exc, 'update the key')
            raise  # not reached
        merged = dict(row)
        merged.update({k: v for k, v in answer.items() if k not in ('key', 'token')})
        if 'soft_budget' in changes:
            merged['soft_budget'] = changes['soft_budget']
        result.update(key_info=key_info(merged), msg='updated key %s (%s)' % (self.alias, names))
        return result

    def regenerate(self, row: dict[str, t.Any], changes: dict[str, t.Any], diff: dict[str, t.Any]) -> dict[str, t.Any]:
        token = row.get('token')
        diff['before']['token'] = token
        diff['after']['token'] = '(new)'
        result: dict[str, t.Any] = dict(changed=True, token=token, diff=diff, key_info=key_info(row))
        if self.module.check_mode:
            result['msg'] = 'would regenerate key %s' % self.alias
            return result
        body = update_body(row, changes)
        if self.params['duration'] is not None:
            body['duration'] = self.params['duration']
        try:
            answer = self.client.regenerate(token, body)
        except LitellmApiError as exc:
            self.fail(exc, 'regenerate the key')
            raise  # not reached
        new_token = answer.get('token_id') or answer.get('token')
        merged = dict(row)
        merged.update({k: v for k, v in answer.items() if k != 'key' and v is not None})
        merged['token'] = new_token
        if 'soft_budget' in changes:
            merged['soft_budget'] = changes['soft_budget']
        diff['after']['token'] = new_token
        result.update(key=answer['key'], token=new_token, key_info=key_info(merged),
                      msg='regenerated key %s (store the returned key now: the old one no longer works)'
                          % self.alias)
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str', default='http://127.0.0.1:4000'),
            master_key=dict(type='str', no_log=True),
            master_key_file=dict(type='path'),
            key_alias=dict(type='str', required=True, no_log=False),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            models=dict(type='list', elements='str'),
            max_budget=dict(type='float'),
            budget_duration=dict(type='str'),
            soft_budget=dict(type='float'),
            rpm_limit=dict(type='int'),
            tpm_limit=dict(type='int'),
            max_parallel_requests=dict(type='int'),
            duration=dict(type='str'),
            metadata=dict(type='dict'),
            team_id=dict(type='str'),
            user_id=dict(type='str'),
            regenerate=dict(type='bool', default=False),
            validate_certs=dict(type='bool', default=True),
            ca_path=dict(type='path'),
            timeout=dict(type='int', default=30),
        ),
        mutually_exclusive=[('master_key', 'master_key_file')],
        required_one_of=[('master_key', 'master_key_file')],
        supports_check_mode=True,
    )
    params = module.params
    if not params['key_alias'].strip():
        module.fail_json(msg='key_alias must not be empty')

    master_key = params['master_key']
    if params['master_key_file']:
        try:
            master_key = read_master_key_file(params['master_key_file'])
        except (OSError, ValueError) as exc:
            module.fail_json(msg='cannot read the master key from master_key_file=%s: %s' % (
                params['master_key_file'], to_native(exc)))
        module.no_log_values.add(master_key)
    if not master_key:
        module.fail_json(msg='master_key is empty: set the proxy\'s LITELLM_MASTER_KEY')

    client = LitellmClient(params['url'], master_key, timeout=params['timeout'],
                           validate_certs=params['validate_certs'], ca_path=params['ca_path'])
    manager = KeyManager(module, client)
    row = manager.lookup()
    if params['state'] == 'absent':
        result = manager.absent(row)
    else:
        result = manager.present(row)
    result['key_alias'] = params['key_alias']
    module.exit_json(**result)


if __name__ == '__main__':
    main()
