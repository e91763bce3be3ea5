#!/usr/bin/env bash
# One device call (issue 7, "measure first"): the same sweep (random 256/256, ignore-eos,
# concurrency 1, 32, 128; 16, 128 and 256 prompts for every path) against
#   raw            vLLM 0.22.0 direct (Qwen2.5-7B shape, dummy weights, bf16)
#   nginx          the nginx.conf the nginx_tls role renders (TLS, limit_req, allow-list), upstream vLLM
#   nginx+gateway  the same nginx in front of LiteLLM 1.108.7 with the config.yaml and unit
#                  options the litellm_gateway role renders (1 worker), in front of the same vLLM
# and a py-spy profile of the gateway during its c=128 run.
# Inputs carried from the checkout: .gpu/run/{nginx.role.conf,litellm.role.yaml,ffdhe2048.pem}
# (copied from the Molecule host the roles converged) and the staged wheels (vLLM, LiteLLM,
# py-spy) and nginx .debs. Site-specific paths of the role files are rewritten below.
# PATHS (environment) picks the paths, default "raw nginx gw" (gw = nginx + gateway); every
# benchmark is capped at BENCH_TIMEOUT seconds (default 170). Results: $OUT/summary.txt and
# $OUT/results.tar.gz (all JSON and logs).
set -u
PATHS=${PATHS:-raw nginx gw} BENCH_TIMEOUT=${BENCH_TIMEOUT:-170}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 VLLM_USE_FLASHINFER_SAMPLER=0
REPO=$PWD t0=$(date +%s)
log() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
(cd /tmp/stage && mkdir -p x && cat part* | tar -x -C x && rm -f part* && \
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site x/*.whl) || exit 1
(cd /tmp/llstage && mkdir -p x && cat part* | tar -x -C x && rm -f part* && \
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/llsite x/*.whl && \
  mkdir -p /tmp/ng/x && for d in x/nginx*.deb; do dpkg -x "$d" /tmp/ng/x; done) || exit 1
mkdir -p /var/lib/nginx/{body,fastcgi,proxy,scgi,uwsgi} /tmp/llprom
log installed
python3 tests/harness/make_tiny_model.py --shape qwen2.5-7b /tmp/q7 >/dev/null || exit 1

KEY=sk-vllm-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
MASTER=sk-gw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
# TLS: a self-signed certificate for 127.0.0.1 that the client trusts.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1,DNS:gpuserve.test -keyout /tmp/ng/key.pem -out /tmp/ng/cert.pem 2>/dev/null
CA=$(PYTHONPATH=/tmp/site python3 -c 'import certifi; print(certifi.where())' 2>/dev/null)
[[ -n "$CA" ]] && cat /tmp/ng/cert.pem >> "$CA"
export SSL_CERT_FILE=/tmp/ng/cert.pem
cp .gpu/run/ffdhe2048.pem /tmp/ng/
nginx_conf() {  # upstream -> /tmp/ng/nginx-<name>.conf from the role's file
  sed -E -e 's/^user .*/user root;/' -e 's|^pid .*|pid /tmp/ng/nginx.pid;|' \
    -e 's|^error_log [^ ]+|error_log /tmp/ng/error.log|' -e '/modules-enabled/d' \
    -e 's|include /etc/nginx/mime.types|include /tmp/ng/x/etc/nginx/mime.types|' \
    -e 's|access_log /var/log/nginx/[^ ]+|access_log /tmp/ng/access.log|' \
    -e '/listen \[::\]/d' -e 's/listen 80 /listen 18080 /' -e 's/listen 443 /listen 18443 /' \
    -e 's/listen 127.0.0.1:8080;/listen 127.0.0.1:18081;/' \
    -e 's|ssl_certificate .*|ssl_certificate /tmp/ng/cert.pem;|' -e 's|ssl_certificate_key .*|ssl_certificate_key /tmp/ng/key.pem;|' \
    -e 's|ssl_dhparam .*|ssl_dhparam /tmp/ng/ffdhe2048.pem;|' \
    -e 's/(zone=gpuserve_per_key:[^ ]+) rate=[^;]+;/\1 rate=100000r\/s;/' \
    -e "/upstream gpuserve_backend/,/}/ s/^( *server )[^ ]+/\1$1/" .gpu/run/nginx.role.conf > /tmp/ng/nginx-$2.conf
}
nginx_conf 127.0.0.1:8000 engine; nginx_conf 127.0.0.1:4000 gateway
cp /tmp/ng/nginx-engine.conf $OUT/nginx-engine.conf
NGINX=/tmp/ng/x/usr/sbin/nginx
$NGINX -t -q -c /tmp/ng/nginx-engine.conf -e /tmp/ng/error.log || { cat /tmp/ng/error.log; exit 1; }

# vLLM: the engine key only in the environment, keep-alive as vllm_engine sets it.
VLLM_API_KEY=$KEY VLLM_HTTP_TIMEOUT_KEEP_ALIVE=75 PYTHONPATH=/tmp/site setsid python3 -m vllm.entrypoints.cli.main serve /tmp/q7 \
  --served-model-name qwen2.5-7b --load-format dummy --dtype bfloat16 --max-model-len 16384 --max-num-seqs 128 \
  --gpu-memory-utilization 0.90 --host 127.0.0.1 --port 8000 > $OUT/vllm.log 2>&1 < /dev/null &
VPID=$!
# LiteLLM as the role runs it (config.yaml from the role, model renamed; 1 worker).
sed -e 's/model_name: tiny/model_name: qwen2.5-7b/' -e 's|hosted_vllm/tiny|hosted_vllm/qwen2.5-7b|' .gpu/run/litellm.role.yaml > /tmp/litellm.yaml
cp /tmp/litellm.yaml $OUT/litellm.yaml
(cd /tmp && LITELLM_MASTER_KEY=$MASTER GPUSERVE_BACKEND_KEY_0=$KEY LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=WARNING \
  LITELLM_TELEMETRY=False PROMETHEUS_MULTIPROC_DIR=/tmp/llprom PYTHONPATH=/tmp/llsite \
  setsid python3 /tmp/llsite/bin/litellm --config /tmp/litellm.yaml --host 127.0.0.1 --port 4000 \
  --num_workers 1 --keepalive_timeout 75 > $OUT/litellm.log 2>&1 < /dev/null &)
for i in $(seq 300); do curl -fs http://127.0.0.1:8000/health >/dev/null && break; sleep 1; done
log "vLLM healthy: $(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:8000/health)"
for i in $(seq 120); do curl -fs http://127.0.0.1:4000/health/readiness >/dev/null && break; sleep 1; done
log "LiteLLM ready: $(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:4000/health/readiness)"
LLPID=$(ss -ltnp 2>/dev/null | sed -n 's/.*:4000 .*pid=\([0-9]*\).*/\1/p' | head -1)

bench() {  # label url key c n seed
  PYTHONPATH=/tmp/site OPENAI_API_KEY=$3 timeout "$BENCH_TIMEOUT" python3 -m vllm.entrypoints.cli.main bench serve --backend openai-chat \
    --endpoint /v1/chat/completions --base-url "$2" --model qwen2.5-7b --tokenizer /tmp/q7 \
    --dataset-name random --random-input-len 256 --random-output-len 256 --ignore-eos \
    --num-prompts "$5" --max-concurrency "$4" --seed "$6" --save-result --result-dir $OUT \
    --result-filename "$1-c$4.json" > $OUT/bench-$1-c$4.log 2>&1 || tail -5 $OUT/bench-$1-c$4.log
}
warm() { PYTHONPATH=/tmp/site OPENAI_API_KEY=$KEY python3 -m vllm.entrypoints.cli.main bench serve --backend openai-chat \
  --endpoint /v1/chat/completions --base-url http://127.0.0.1:8000 --model qwen2.5-7b --tokenizer /tmp/q7 \
  --dataset-name random --random-input-len 256 --random-output-len 32 --ignore-eos --num-prompts 256 \
  --max-concurrency 128 --seed 7 > $OUT/warm.log 2>&1; }
warm; log warmed
seed=100
for c in 1 32 128; do
  case $c in 1) n=16 ;; 32) n=128 ;; 128) n=256 ;; esac
  seed=$((seed + 10))
  [[ " $PATHS " == *" raw "* ]] && { bench raw http://127.0.0.1:8000 "$KEY" $c $n $seed; log "raw c=$c"; }
  if [[ " $PATHS " == *" nginx "* ]]; then
    $NGINX -c /tmp/ng/nginx-engine.conf -e /tmp/ng/error.log
    seed=$((seed + 1)); bench nginx https://127.0.0.1:18443 "$KEY" $c $n $seed; log "nginx c=$c"
    $NGINX -s quit -c /tmp/ng/nginx-engine.conf -e /tmp/ng/error.log; sleep 1
  fi
  if [[ " $PATHS " == *" gw "* ]]; then
    $NGINX -c /tmp/ng/nginx-gateway.conf -e /tmp/ng/error.log
    if [[ $c == 128 && -n "$LLPID" ]]; then
      (sleep 5; timeout 60 /tmp/llsite/bin/py-spy record -d 25 -r 50 -f raw --nonblocking --pid "$LLPID" --subprocesses \
        -o $OUT/litellm-c128.pyspy.txt > $OUT/pyspy.log 2>&1) &
    fi
    seed=$((seed + 1)); bench gw https://127.0.0.1:18443 "$MASTER" $c $n $seed; log "nginx+gateway c=$c"
    $NGINX -s quit -c /tmp/ng/nginx-gateway.conf -e /tmp/ng/error.log; sleep 1
  fi
done
wait
python3 - $OUT <<'PY' | tee $OUT/summary.txt
import json, os, sys
out = sys.argv[1]
print(f"{'path':<15} {'c':>4} {'prompts':>7} {'failed':>6} {'total tok/s':>11} {'vs raw':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8}")
for c in (1, 32, 128):
    raw = json.load(open(f"{out}/raw-c{c}.json")) if os.path.exists(f"{out}/raw-c{c}.json") else None
    for label in ("raw", "nginx", "gw"):
        p = f"{out}/{label}-c{c}.json"
        if not os.path.exists(p):
            print(f"{label:<15} {c:>4} (no result)"); continue
        r = json.load(open(p))
        print(f"{label:<15} {c:>4} {r['num_prompts']:>7} {r['num_prompts'] - r['completed']:>6} {r['total_token_throughput']:>11.0f} "
              f"{(r['total_token_throughput'] / raw['total_token_throughput']) if raw else 0:>7.3f} {r['median_ttft_ms']:>9.1f} {r['p99_ttft_ms']:>9.1f} "
              f"{r['median_itl_ms']:>8.2f} {r['p99_itl_ms']:>8.2f}")
PY
if [[ -s $OUT/litellm-c128.pyspy.txt ]]; then
  python3 - $OUT/litellm-c128.pyspy.txt <<'PY' | tee -a $OUT/summary.txt
# Self time by function (leaf frame) and inclusive time by module, from py-spy's raw stacks.
import collections, sys
leaf, incl, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n); total += n
    frames = stack.split(";")
    leaf[frames[-1].split(" (")[0] + " (" + frames[-1].split(" (")[-1]] += n
    mods = {f.split("(")[-1].split(":")[0].split("site-packages/")[-1].split("/")[0] for f in frames}
    for m in mods: incl[m] += n
print("samples", total)
print("top self time:"); [print(f"  {v / total:6.1%}  {k[:150]}") for k, v in leaf.most_common(20)]
print("inclusive by package:"); [print(f"  {v / total:6.1%}  {k}") for k, v in incl.most_common(15)]
PY
else
  echo "no py-spy profile:"; cat $OUT/pyspy.log 2>/dev/null | tail -5
fi
ps -o pid,rss,args -C python3 | grep -E "litellm|vllm" | cut -c1-160 | tee -a $OUT/summary.txt
kill -TERM -$VPID 2>/dev/null; pkill -f llsite/bin/litellm; sleep 2
(cd $OUT && tar -czf /tmp/results.tar.gz --exclude=summary.txt . && find . -mindepth 1 ! -name summary.txt -delete && mv /tmp/results.tar.gz .)
log done
