# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine_instances filter: the vLLM instances of inventory hosts and how to reach them."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.gpuserve.vllm.plugins.filter.engine_instances import FilterModule, engine_instances

HOSTVARS = {
    'gpu1': {'ansible_host': '10.0.0.11', 'vllm_engine_api_key': 'sk-host-key-0001',
             'vllm_engine_instances': [
                 {'name': 'qwen', 'model': 'Qwen/Qwen2.5-7B-Instruct', 'served_model_name': 'qwen7b', 'port': 8000,
                  'host': '0.0.0.0'},
                 {'name': 'small', 'model_path': '/srv/models/tiny-qwen2/', 'port': 8001, 'api_key': 'sk-own-key-0002'},
                 {'name': 'pinned', 'model': 'm', 'port': 8002, 'host': '10.9.9.9'},
                 {'name': 'v6', 'model': 'm6', 'port': 8003, 'host': '::'},
             ]},
    'gpu2': {'observability_scrape_address': '192.168.1.2'},  # relies on vllm_engine's defaults
    'edge': {'ansible_host': 'fd00::5', 'vllm_engine_host': '0.0.0.0',
             'vllm_engine_instances': [{'name': 'x', 'model': 'x', 'port': 9000}]},
}


def by_name(items):
    return {(i['host'], i['name']): i for i in items}


def test_from_another_host():
    out = by_name(engine_instances(['gpu1', 'gpu2', 'edge'], HOSTVARS, 'nginx'))
    assert out[('gpu1', 'qwen')]['address'] == '10.0.0.11:8000'
    assert out[('gpu1', 'qwen')]['model'] == 'qwen7b'
    assert out[('gpu1', 'qwen')]['api_key'] == 'sk-host-key-0001'
    # bound to loopback: only its own host reaches it there; others use ansible_host
    assert out[('gpu1', 'small')]['address'] == '10.0.0.11:8001'
    assert out[('gpu1', 'small')]['model'] == 'tiny-qwen2'
    assert out[('gpu1', 'small')]['api_key'] == 'sk-own-key-0002'
    assert out[('gpu1', 'pinned')]['address'] == '10.9.9.9:8002'
    assert out[('gpu1', 'v6')]['address'] == '10.0.0.11:8003'
    # vllm_engine's default instance; no ansible_host: the inventory name
    assert out[('gpu2', 'main')] == {'host': 'gpu2', 'name': 'main', 'port': 8000, 'bind': '127.0.0.1',
                                     'address': 'gpu2:8000', 'model': 'Qwen/Qwen2.5-7B-Instruct', 'api_key': '',
                                     'local': False}
    assert out[('edge', 'x')]['address'] == '[fd00::5]:9000'
    assert not any(i['local'] for i in out.values())


def test_from_its_own_host():
    out = by_name(engine_instances(['gpu1'], HOSTVARS, 'gpu1'))
    assert out[('gpu1', 'qwen')]['address'] == '127.0.0.1:8000'
    assert out[('gpu1', 'small')]['address'] == '127.0.0.1:8001'
    assert out[('gpu1', 'pinned')]['address'] == '10.9.9.9:8002'
    assert all(i['local'] for i in out.values())


def test_address_var_wins_over_ansible_host():
    out = by_name(engine_instances(['gpu2', 'gpu1'], HOSTVARS, 'mon', 'observability_scrape_address'))
    assert out[('gpu2', 'main')]['address'] == '192.168.1.2:8000'
    assert out[('gpu1', 'qwen')]['address'] == '10.0.0.11:8000'  # not set there: ansible_host


def test_empty_and_bad_input():
    assert engine_instances(None, HOSTVARS, 'x') == []
    assert engine_instances([], HOSTVARS, 'x') == []
    with pytest.raises(AnsibleFilterError, match='list of inventory host names'):
        engine_instances('gpu1', HOSTVARS, 'x')
    with pytest.raises(AnsibleFilterError, match='nohost is not in hostvars'):
        engine_instances(['nohost'], HOSTVARS, 'x')
    with pytest.raises(AnsibleFilterError, match=r'vllm_engine_instances\[0\] of bad needs at least a port'):
        engine_instances(['bad'], {'bad': {'vllm_engine_instances': [{'name': 'n'}]}}, 'x')


def test_registered():
    assert FilterModule().filters()['engine_instances'] is engine_instances
