# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The litellm_key idempotence scenario against a REAL LiteLLM proxy.

Runs only when LITELLM_TEST_URL (the proxy root, e.g. http://127.0.0.1:4000) and
LITELLM_TEST_MASTER_KEY (its master key) are set; the proxy must have a database, since
virtual keys live there. Otherwise the test is skipped, with a reason shown by ``pytest -rs``.
It creates, updates and deletes a key with a unique alias (gpuserve-vllm-test-...).
Regeneration is not exercised here: it needs a LiteLLM Enterprise license.
"""

from __future__ import annotations

import os
import uuid

import pytest

URL_VAR = "LITELLM_TEST_URL"
KEY_VAR = "LITELLM_TEST_MASTER_KEY"


def test_idempotence_against_real_litellm(idempotence_scenario):
    url, master_key = os.environ.get(URL_VAR), os.environ.get(KEY_VAR)
    if not url or not master_key:
        pytest.skip("no real LiteLLM to test against: set %s (proxy URL) and %s (its master key) to run "
                    "the litellm_key idempotence scenario against a real LiteLLM with a database" % (URL_VAR, KEY_VAR))
    steps = idempotence_scenario(url, master_key, "gpuserve-vllm-test-%s" % uuid.uuid4().hex[:8])
    assert steps["create"][0]["key_info"]["models"] == ["tiny"]
