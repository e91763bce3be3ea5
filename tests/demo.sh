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
# The key stays in the gateway's 0600 environment file: read it there into a 0600 header file
# for curl (-H @file), never onto a command line, never printed.
cmd=$(cat <<'CMD'
umask 077 && h=$(mktemp) && trap 'rm -f "$h"' EXIT && . /etc/litellm/litellm.env &&
printf 'Authorization: Bearer %s\n' "$LITELLM_MASTER_KEY" > "$h" &&
curl -sS https://gpuserve.test/v1/chat/completions -H @"$h" -H 'Content-Type: application/json' \
  -d '{"model": "tiny", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}'
CMD
)
echo
echo "The stack is up in container $host: https://gpuserve.test (nginx, certificate from Pebble, key checks by gpuserve-keyd.service) -> vLLM (vllm-tiny.service)."
echo "Try it:"
echo
echo "  podman exec $host sh -c '$(printf '%s' "$cmd" | sed "s/'/'\\\\''/g")'"
echo
echo "Answer:"
podman exec "$host" sh -c "$cmd"
echo
echo
echo "Tear down with: tests/demo.sh destroy"
