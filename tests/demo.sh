#!/usr/bin/env bash
# Bring the stack up on the embedded default and show it answering:
# a local container that boots systemd, the CPU build of vLLM, and a tiny model built
# here. Nothing needs a GPU or a model hub. Tear down with: tests/demo.sh destroy
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/harness/setup.sh"
# shellcheck source=tests/harness/env.sh
. "$here/harness/env.sh"
cd "$GPUSERVE_COLLECTION_ROOT"

if [[ "${1:-}" == destroy ]]; then
  exec molecule destroy -s default
fi

molecule create -s default
molecule prepare -s default --force
molecule converge -s default

host=gpuserve-vllm-default
# The key stays in the gateway's 0600 environment file: read it there, never print it.
cmd=$(cat <<'CMD'
. /etc/litellm/litellm.env && curl -sS https://gpuserve.test/v1/chat/completions \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY" -H 'Content-Type: application/json' \
  -d '{"model": "tiny", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}'
CMD
)
echo
echo "The stack is up in container $host: https://gpuserve.test (nginx, certificate from Pebble) -> LiteLLM (litellm.service) -> vLLM (vllm-tiny.service)."
echo "Try it:"
echo
echo "  podman exec $host sh -c '$(printf '%s' "$cmd" | sed "s/'/'\\\\''/g")'"
echo
echo "Answer:"
podman exec "$host" sh -c "$cmd"
echo
echo
echo "Tear down with: tests/demo.sh destroy"
