#!/usr/bin/env bash
# Benchmark (not a test): what each layer of the deployed stack costs. The same
# `vllm bench serve` sweep (random prompts, ignore-eos, fixed seed) runs against several
# paths, alternating path by path at each concurrency, inside the converged Molecule host of
# the default scenario (tests/demo.sh brings it up). Paths:
#   direct          http://127.0.0.1:8000 (vLLM, engine key)
#   nginx           https://gpuserve.test, nginx upstream pointed at the engine for the run
#   gateway         http://127.0.0.1:4000 (LiteLLM, master key)
#   nginx+gateway   https://gpuserve.test -> LiteLLM -> vLLM (a stack deployed with
#                   litellm_gateway_data_path: litellm, e.g. molecule/litellm's host)
#   edge            https://gpuserve.test -> vLLM with nginx's auth_request to gpuserve-keyd and
#                   the usage filter (the edge data path, the default), a virtual key made for
#                   the run and deleted after it
# Prints total tok/s, its ratio to direct, TTFT/ITL p50 and their differences to direct.
# Every run draws new random prompts (its own seed) so that no path profits from prompts
# already in vLLM's prefix cache, and the order of the paths alternates between concurrencies.
#
# For the run, the per-key rate limit is raised to 100000 r/s (limit_req stays on the path:
# a load test uses one key) and, with WORKERS, LiteLLM is restarted with each worker count
# through a runtime drop-in; the role's files and settings are restored at the end.
#
# Usage: tests/benchmarks/stack_overhead.sh [-p PATHS] [-c CONCURRENCIES] [-w WORKERS] [-i IN] [-o OUT]
#   defaults: -p "direct nginx" -c "1 8 32" -w "" -i 128 -o 128; prompts per run: max(16, 4 x c)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/harness/env.sh
. "$here/../harness/env.sh"
host=${GPUSERVE_BENCH_HOST:-gpuserve-vllm-default}
paths="direct nginx" concurrencies="1 8 32" workers="" input_len=128 output_len=128
while getopts "p:c:w:i:o:" opt; do
  case $opt in
    p) paths=$OPTARG ;; c) concurrencies=$OPTARG ;; w) workers=$OPTARG ;;
    i) input_len=$OPTARG ;; o) output_len=$OPTARG ;; *) exit 2 ;;
  esac
done
podman exec "$host" true || { echo "no running host $host: run tests/demo.sh first" >&2; exit 1; }

podman exec -i "$host" bash -s -- "$paths" "$concurrencies" "$workers" "$input_len" "$output_len" <<'BENCH'
set -euo pipefail
paths=$1 concurrencies=$2 workers=$3 input_len=$4 output_len=$5
out=$(mktemp -d /tmp/gpuserve-bench.XXXXXX)
dropin=/run/systemd/system/litellm.service.d
cp /etc/nginx/nginx.conf "$out/nginx.conf.role"
restore() {
  cp "$out/nginx.conf.role" /etc/nginx/nginx.conf && nginx -t -q && systemctl reload nginx
  if [[ -e $dropin/bench.conf ]]; then
    rm -f "$dropin/bench.conf"; systemctl daemon-reload; systemctl restart litellm.service
  fi
  if [[ -n ${edge_token:-} ]]; then keyd POST /key/delete "{\"keys\": [\"$edge_token\"]}" >/dev/null; fi
  rm -rf "$out"
}
trap restore EXIT
keyd() {  # method path [json]: gpuserve-keyd's key API with $master_key (passed in the environment)
  LITELLM_MASTER_KEY=$master_key python3 - "$@" <<'PY'
import os, sys, urllib.request
req = urllib.request.Request('http://127.0.0.1:4000' + sys.argv[2], method=sys.argv[1],
                             data=sys.argv[3].encode() if len(sys.argv) > 3 else None,
                             headers={'Authorization': 'Bearer ' + os.environ['LITELLM_MASTER_KEY'],
                                      'Content-Type': 'application/json'})
print(urllib.request.urlopen(req, timeout=30).read().decode())
PY
}
env_of() { sed -n "s/^$2=\"\(.*\)\"$/\1/p" "$1"; }
engine_key=$(env_of /etc/vllm/tiny.env VLLM_API_KEY)
master_key=$(env_of /etc/litellm/litellm.env LITELLM_MASTER_KEY 2>/dev/null || true)
gw_upstream=$(sed -n 's/^ *server \(127\.0\.0\.1:4000\) .*/\1/p' "$out/nginx.conf.role" | head -1)

nginx_to() {  # point the upstream group at $1 (host:port), raise the per-key rate
  sed -E -e 's/(zone=gpuserve_per_key:[^ ]+) rate=[^;]+;/\1 rate=100000r\/s;/' \
         -e "/upstream gpuserve_backend/,/}/ s/^( *server )[^ ]+/\1$1/" \
         "$out/nginx.conf.role" > /etc/nginx/nginx.conf
  nginx -t -q && systemctl reload nginx
}
litellm_workers() {
  mkdir -p "$dropin"
  sed -n 's/^ExecStart=//p; /^    --/p' /etc/systemd/system/litellm.service | tr -d '\\' | tr '\n' ' ' \
    | sed -E "s/--num_workers [0-9]+/--num_workers $1/" > "$out/exec"
  # what the role renders for more than one worker
  if (($1 > 1)) && ! grep -q -- --timeout_worker_healthcheck "$out/exec"; then
    printf ' --timeout_worker_healthcheck 120' >> "$out/exec"
  fi
  printf '[Service]\nExecStart=\nExecStart=%s\n' "$(cat "$out/exec")" > "$dropin/bench.conf"
  systemctl daemon-reload && systemctl restart litellm.service
  for _ in $(seq 120); do
    curl -fs http://127.0.0.1:4000/health/readiness >/dev/null && return 0; sleep 1
  done
  echo "LiteLLM did not become ready with $1 workers" >&2; return 1
}
seed=$(( $(date +%s) % 100000 * 100 ))
bench() {  # path concurrency label
  local path=$1 c=$2 label=$3 base key n
  # A new seed for every run: the same prompts twice would hit vLLM's prefix cache and
  # favour whichever path runs second.
  seed=$((seed + 1))
  n=$(( c * 4 > 16 ? c * 4 : 16 ))
  case $path in
    direct) base=http://127.0.0.1:8000 key=$engine_key ;;
    nginx) nginx_to 127.0.0.1:8000; base=https://gpuserve.test key=$engine_key ;;
    gateway) base=http://127.0.0.1:4000 key=$master_key ;;
    nginx+gateway) nginx_to "${gw_upstream:-127.0.0.1:4000}"; base=https://gpuserve.test key=$master_key ;;
    edge)
      if [[ -z ${edge_key:-} ]]; then
        made=$(keyd POST /key/generate "{\"key_alias\": \"bench-$seed\"}")
        edge_key=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])' <<<"$made")
        edge_token=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$made")
      fi
      nginx_to 127.0.0.1:8000; base=https://gpuserve.test key=$edge_key ;;
  esac
  OPENAI_API_KEY=$key /opt/vllm/venv/bin/vllm bench serve --backend openai-chat --endpoint /v1/chat/completions \
    --base-url "$base" --model tiny --tokenizer /srv/models/tiny-qwen2 \
    --dataset-name random --random-input-len "$input_len" --random-output-len "$output_len" \
    --ignore-eos --num-prompts "$n" --max-concurrency "$c" --seed "$seed" \
    --save-result --result-dir "$out" --result-filename "$label-c$c.json" >"$out/$label-c$c.log" 2>&1 \
    || { tail -30 "$out/$label-c$c.log" >&2; return 1; }
}
labels=()
round=0
for c in $concurrencies; do
  # Alternate the order of the paths from one concurrency to the next.
  round=$((round + 1))
  order=$paths
  ((round % 2 == 0)) && order=$(printf '%s\n' $paths | tac | tr '\n' ' ')
  for path in $order; do
    if [[ $path == *gateway* && -n $workers ]]; then
      for w in $workers; do litellm_workers "$w"; bench "$path" "$c" "$path-w$w"; done
    else
      bench "$path" "$c" "$path"
    fi
  done
done
for path in $paths; do
  if [[ $path == *gateway* && -n $workers ]]; then for w in $workers; do labels+=("$path-w$w"); done
  else labels+=("$path"); fi
done
python3 - "$out" "$concurrencies" "${labels[@]}" <<'PY'
import json, sys
out, cs, labels = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
print(f"{'path':<20} {'c':>3} {'prompts':>7} {'failed':>6} {'tok/s':>9} {'vs direct':>9} {'TTFT p50 ms':>11} {'dTTFT':>8} {'ITL p50 ms':>10} {'dITL':>7}")
for c in cs:
    d = json.load(open(f"{out}/direct-c{c}.json")) if "direct" in labels else None
    for label in labels:
        r = json.load(open(f"{out}/{label}-c{c}.json"))
        failed = r["num_prompts"] - r["completed"]
        ratio = f"{r['total_token_throughput'] / d['total_token_throughput']:.3f}" if d else "-"
        dttft = f"{r['median_ttft_ms'] - d['median_ttft_ms']:+.2f}" if d else "-"
        ditl = f"{r['median_itl_ms'] - d['median_itl_ms']:+.2f}" if d else "-"
        print(f"{label:<20} {c:>3} {r['num_prompts']:>7} {failed:>6} {r['total_token_throughput']:>9.1f} {ratio:>9} "
              f"{r['median_ttft_ms']:>11.1f} {dttft:>8} {r['median_itl_ms']:>10.2f} {ditl:>7}")
PY
BENCH
