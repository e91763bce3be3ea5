#!/usr/bin/env bash
# Profile (not a test): where LiteLLM's time goes when it is in the data path. While
# stack_overhead.sh drives the nginx+gateway path at one concurrency inside a converged host
# deployed with litellm_gateway_data_path: litellm (molecule/litellm's host), py-spy samples the
# LiteLLM process from the controller for a fixed time, and the samples of its event-loop thread
# are summed by what LiteLLM does per request and per stream chunk.
#
# Needs py-spy on the controller (pip install py-spy) and a host whose processes the controller
# can see (a rootful podman container). Nothing is changed on the host beyond what
# stack_overhead.sh changes and restores.
# Usage: tests/benchmarks/profile_gateway.sh [-c CONCURRENCY] [-d SECONDS] [-o RAW_OUTPUT]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
host=${GPUSERVE_BENCH_HOST:-gpuserve-vllm-litellm}
concurrency=32 seconds=20 raw=$(mktemp /tmp/gpuserve-litellm-profile.XXXXXX)
while getopts "c:d:o:" opt; do
  case $opt in c) concurrency=$OPTARG ;; d) seconds=$OPTARG ;; o) raw=$OPTARG ;; *) exit 2 ;; esac
done
pyspy=$(command -v py-spy) || { echo "py-spy is not installed on this machine: pip install py-spy" >&2; exit 1; }
# LiteLLM's PID as the controller sees it (py-spy attaches from here)
hostpid=$(podman top "$host" hpid args | awk '/bin\/litellm --config/ {print $1; exit}')
[[ -n $hostpid ]] || { echo "no LiteLLM process in $host: deploy it with litellm_gateway_data_path: litellm" >&2; exit 1; }
GPUSERVE_BENCH_HOST=$host "$here/stack_overhead.sh" -p "nginx+gateway" -c "$concurrency" &
load=$!
# vllm bench needs a while to start inside the host; sample while the load runs
sleep "${GPUSERVE_PROFILE_DELAY:-30}"
kill -0 "$load" || { echo "the load ended before sampling began" >&2; exit 1; }
"$pyspy" record -p "$hostpid" -d "$seconds" -r 100 -f raw -o "$raw" --nonblocking
wait "$load"
python3 - "$raw" "$seconds" <<'PY'
import collections, sys
path, seconds = sys.argv[1], float(sys.argv[2])
groups = {  # what LiteLLM does, by the frames it does it in (inclusive: a sample can count twice)
    "stream chunk handling (CustomStreamWrapper.__anext__)": ("CustomStreamWrapper.__anext__",),
    "proxy streaming hooks (post_call_streaming)": ("post_call_streaming",),
    "pydantic models (build, validate, dump)": ("pydantic/",),
    "chunk re-creation (chunk_creator)": ("chunk_creator",),
    "key auth per request (user_api_key_auth)": ("user_api_key_auth",),
    "imports on the request path (importlib)": ("<frozen importlib",),
    "success logging (Logging success handlers)": ("success_handler",),
    "response writes (uvicorn send)": ("RequestResponseCycle.send",),
    "Prometheus callback": ("PrometheusLogger",),
    "upstream HTTP client (aiohttp/httpx)": ("aiohttp", "httpx", "httpcore"),
}
main, counts, others = 0, collections.Counter(), collections.Counter()
for line in open(path):
    stack, n = line.rsplit(" ", 1)
    frames, n = stack.split(";"), int(n)
    if frames[0].startswith("Thread._bootstrap"):  # helper threads, summed apart
        others[frames[2].split(" (")[0] if len(frames) > 2 else frames[0]] += n
        continue
    main += n
    for name, pats in groups.items():
        if any(p in f for f in frames for p in pats):
            counts[name] += n
print("event-loop thread: %d samples in %.0f s at 100 Hz = %.0f%% of one core" % (main, seconds, main / seconds))
for name, n in counts.most_common():
    print("  %5.1f%%  %s" % (100.0 * n / max(main, 1), name))
print("helper threads (samples): " + ", ".join("%s %d" % kv for kv in others.most_common(4)))
PY
echo "raw samples: $raw"
