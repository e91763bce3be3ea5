# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vLLM instances of a group of inventory hosts, as the roles that talk to them see them.

One place for what nginx_tls (upstreams, the engines' key), litellm_gateway (model_list) and
observability (scrape targets) each derived with their own Jinja loop. Documented in
engine_instances.yml next to this file.
"""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

#: vllm_engine's default for vllm_engine_instances: a host that relies on the role's defaults
#: runs this instance.
DEFAULT_INSTANCES: list[dict[str, t.Any]] = [{'name': 'main', 'model': 'Qwen/Qwen2.5-7B-Instruct', 'port': 8000}]
_ANY = frozenset(('0.0.0.0', '::', ''))
_LOOPBACK = frozenset(('localhost', '::1', 'ip6-localhost'))


def _is_loopback(address: str) -> bool:
    return address in _LOOPBACK or address.startswith('127.')


def _hostport(address: str, port: t.Any) -> str:
    return '%s:%s' % ('[%s]' % address if ':' in address else address, port)


def engine_instances(
    group_hosts: t.Any,
    hostvars: t.Any,
    this_host: str,
    address_var: str = '',
) -> list[dict[str, t.Any]]:
    """One dict per vLLM instance of ``group_hosts`` (see engine_instances.yml)."""
    if group_hosts is None:
        return []
    if isinstance(group_hosts, str) or not isinstance(group_hosts, (list, tuple)):
        raise AnsibleFilterError('engine_instances: expects a list of inventory host names, got %r' % (group_hosts,))
    out: list[dict[str, t.Any]] = []
    for host in group_hosts:
        try:
            hv = hostvars[host]
        except KeyError:
            raise AnsibleFilterError('engine_instances: %s is not in hostvars' % host) from None
        local = host == this_host
        remote = (hv.get(address_var) if address_var else None) or hv.get('ansible_host') or host
        instances = hv.get('vllm_engine_instances') or DEFAULT_INSTANCES
        for index, inst in enumerate(instances):
            if not isinstance(inst, dict) or 'port' not in inst:
                raise AnsibleFilterError('engine_instances: vllm_engine_instances[%d] of %s needs at least a port'
                                         % (index, host))
            bind = str(inst.get('host') or hv.get('vllm_engine_host') or '127.0.0.1')
            if local:
                address = '127.0.0.1' if bind in _ANY else bind
            else:
                address = str(remote) if bind in _ANY or _is_loopback(bind) else bind
            served = (inst.get('served_model_name') or inst.get('model')
                      or str(inst.get('model_path') or '').rstrip('/').rsplit('/', 1)[-1])
            out.append({
                'host': host,
                'name': inst.get('name', ''),
                'port': int(inst['port']),
                'bind': bind,
                'address': _hostport(address, int(inst['port'])),
                'model': served,
                'api_key': inst.get('api_key') or hv.get('vllm_engine_api_key') or '',
                'local': local,
            })
    return out


class FilterModule:
    """gpuserve.vllm filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'engine_instances': engine_instances}
