#!/usr/bin/env bash
# One device call (issue 7): raw vLLM against the edge data path, side by side, same sweep as
# NOTES.md and docs/measurements/h200-2026-12-02 (random 256/256, ignore-eos, concurrency 1, 32,
# 128 with 16, 128, 256 prompts, after a warm-up of the same shape at c=128; the order alternates per step):
#   raw   vLLM 0.22.0 direct (Qwen2.5-7B shape, dummy weights, bf16, --enable-force-include-usage
#         as vllm_engine passes it)
#   edge  the nginx.conf nginx_tls renders for the edge path (TLS, limit_req, allow-list,
#         auth_request to gpuserve-keyd, njs usage filter, usage log), gpuserve-keyd from
#         roles/litellm_gateway/files, a virtual key created through its /key/generate.
# Also: the tokens gpuserve-keyd counted for the key against vLLM's own counters over the edge runs.
# Inputs carried from the checkout: .gpu/run/{nginx.edge.conf,ffdhe2048.pem,debs/*.deb} and the
# staged vLLM wheels. BENCH_TIMEOUT caps each benchmark (default 120 s). REPEAT (default 1) runs the
# sweep again (files suffixed -r2, ...); a step of a repeat starts only before SWEEP_DEADLINE s (default 460).
# CONCURRENCIES (default "128 32 1") picks the steps.
# Results: $OUT/summary.txt
# (written as it goes) and $OUT/results.tar.gz.
set -u
BENCH_TIMEOUT=${BENCH_TIMEOUT:-120} REPEAT=${REPEAT:-1} SWEEP_DEADLINE=${SWEEP_DEADLINE:-460} SUF=
CONCURRENCIES=${CONCURRENCIES:-128 32 1}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 VLLM_USE_FLASHINFER_SAMPLER=0
REPO=$PWD t0=$(date +%s)
log() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a $OUT/summary.txt; }
# A machine still warm from an earlier call may hold that call's servers (an aborted run leaves
# them): stop what this script started then, by the PIDs it wrote down, and start clean.
PIDS=/tmp/gpuserve-edge-bench.pids
if [[ -s $PIDS ]]; then
  kill -TERM $(cat $PIDS) 2>/dev/null
  for _ in $(seq 60); do kill -0 $(cat $PIDS) 2>/dev/null || break; sleep 1; done
fi
rm -rf /tmp/keyd /tmp/ng $PIDS
stop_servers() {
  kill -TERM ${VPID:+-$VPID} ${KPID:-} 2>/dev/null
  [[ -s /tmp/ng/nginx.pid ]] && kill -QUIT "$(cat /tmp/ng/nginx.pid)" 2>/dev/null
  rm -f $PIDS /tmp/ng/nginx.pid; VPID= KPID=
}
trap stop_servers EXIT
if compgen -G '/tmp/stage/part*' >/dev/null; then
  (cd /tmp/stage && rm -rf x && mkdir -p x && cat part* | tar -x -C x && rm -f part* && rm -rf /tmp/site && \
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site x/*.whl) || exit 1
else
  [[ -d /tmp/site/vllm ]] || { echo "no staged wheels in /tmp/stage and no /tmp/site/vllm" >&2; exit 1; }
fi
mkdir -p /tmp/ng/x /tmp/keyd /var/lib/nginx/{body,fastcgi,proxy,scgi,uwsgi}
for d in .gpu/run/debs/*.deb; do dpkg -x "$d" /tmp/ng/x; done
log installed
python3 tests/harness/make_tiny_model.py --shape qwen2.5-7b /tmp/q7 >/dev/null || exit 1
KEY=sk-vllm-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
MASTER=sk-gw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
export VLLM_API_KEY=$KEY LITELLM_MASTER_KEY=$MASTER
# vLLM first: it takes longest to start.
VLLM_HTTP_TIMEOUT_KEEP_ALIVE=75 PYTHONPATH=/tmp/site setsid python3 -m vllm.entrypoints.cli.main serve /tmp/q7 \
  --served-model-name qwen2.5-7b --load-format dummy --dtype bfloat16 --max-model-len 16384 --max-num-seqs 128 \
  --gpu-memory-utilization 0.90 --host 127.0.0.1 --port 8000 --enable-force-include-usage > /tmp/vllm.log 2>&1 < /dev/null &
VPID=$!
echo "-$VPID" >> $PIDS
unset VLLM_API_KEY
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1,DNS:gpuserve.test -keyout /tmp/ng/key.pem -out /tmp/ng/cert.pem 2>/dev/null
export SSL_CERT_FILE=/tmp/ng/cert.pem
cp .gpu/run/ffdhe2048.pem /tmp/ng/
( umask 077; printf 'set $gpuserve_backend_auth "Bearer %s";\n' "$KEY" > /tmp/ng/backend-auth.conf )
# The role's file with this machine's paths; rate limit raised so the sweep measures the data path.
sed -E -e 's/^user .*/user root;/' -e 's|^pid .*|pid /tmp/ng/nginx.pid;|' \
  -e 's|^error_log [^ ]+|error_log /tmp/ng/error.log|' \
  -e 's|^include /etc/nginx/modules-enabled/\*.conf;|load_module /tmp/ng/x/usr/lib/nginx/modules/ngx_http_js_module.so;|' \
  -e 's|include /etc/nginx/mime.types|include /tmp/ng/x/etc/nginx/mime.types|' \
  -e 's|access_log /var/log/nginx/[^ ]+|access_log /tmp/ng/access.log|' \
  -e 's|/var/log/gpuserve/usage.log|/tmp/ng/usage.log|' \
  -e "s|/etc/nginx/gpuserve/usage.js|$REPO/roles/nginx_tls/files/gpuserve_usage.js|" \
  -e 's|include /etc/nginx/gpuserve/backend-auth.conf|include /tmp/ng/backend-auth.conf|' \
  -e '/listen \[::\]/d' -e 's/listen 80 /listen 18080 /' -e 's/listen 443 /listen 18443 /' \
  -e 's/listen 127.0.0.1:8080;/listen 127.0.0.1:18081;/' \
  -e 's|ssl_certificate .*|ssl_certificate /tmp/ng/cert.pem;|' -e 's|ssl_certificate_key .*|ssl_certificate_key /tmp/ng/key.pem;|' \
  -e 's|ssl_dhparam .*|ssl_dhparam /tmp/ng/ffdhe2048.pem;|' \
  -e 's/(zone=gpuserve_per_key:[^ ]+) rate=[^;]+;/\1 rate=100000r\/s;/' \
  -e "/upstream gpuserve_backend/,/}/ s/^( *server )[^ ]+/\1127.0.0.1:8000/" .gpu/run/nginx.edge.conf > /tmp/ng/nginx.conf
cp /tmp/ng/nginx.conf $OUT/nginx-edge.conf
NGINX=/tmp/ng/x/usr/sbin/nginx
$NGINX -t -q -c /tmp/ng/nginx.conf -e /tmp/ng/error.log || { cat /tmp/ng/error.log; exit 1; }
printf '{"host":"127.0.0.1","port":4000,"database":"/tmp/keyd/keys.sqlite3","usage_log":"/tmp/ng/usage.log"}\n' > /tmp/keyd/config.json
setsid python3 roles/litellm_gateway/files/gpuserve_keyd.py --config /tmp/keyd/config.json > /tmp/keyd.log 2>&1 < /dev/null &
KPID=$!
echo "$KPID" >> $PIDS
sleep 1
VKEY=$(python3 - <<'PY'
import json, os, urllib.request
req = urllib.request.Request('http://127.0.0.1:4000/key/generate', data=json.dumps({'key_alias': 'bench'}).encode(),
                             headers={'Authorization': 'Bearer ' + os.environ['LITELLM_MASTER_KEY'],
                                      'Content-Type': 'application/json'})
print(json.load(urllib.request.urlopen(req))['key'])
PY
)
[[ $VKEY == sk-* ]] || { log "no virtual key"; cat /tmp/keyd.log; exit 1; }
$NGINX -c /tmp/ng/nginx.conf -e /tmp/ng/error.log && cat /tmp/ng/nginx.pid >> $PIDS
for i in $(seq 300); do curl -fs http://127.0.0.1:8000/health >/dev/null && break; sleep 1; done
log "vLLM healthy: $(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:8000/health)"
counters() { curl -s http://127.0.0.1:8000/metrics | awk '/^vllm:(prompt|generation)_tokens_total/ {s[$1 ~ /prompt/ ? "p" : "g"] += $2} END {printf "%d %d\n", s["p"], s["g"]}'; }
bench() {  # label url key c n seed
  OPENAI_API_KEY=$3 PYTHONPATH=/tmp/site timeout "$BENCH_TIMEOUT" python3 -m vllm.entrypoints.cli.main bench serve --backend openai-chat \
    --endpoint /v1/chat/completions --base-url "$2" --model qwen2.5-7b --tokenizer /tmp/q7 \
    --dataset-name random --random-input-len 256 --random-output-len 256 --ignore-eos \
    --num-prompts "$5" --max-concurrency "$4" --seed "$6" --save-result --result-dir $OUT \
    --result-filename "$1-c$4$SUF.json" > $OUT/bench-$1-c$4$SUF.log 2>&1 || tail -5 $OUT/bench-$1-c$4$SUF.log
}
line() { python3 - "$OUT" "$1" "$2" "$SUF" <<'PY' | tee -a $OUT/summary.txt
import json, os, sys
out, label, c, suf = sys.argv[1:]
raw = f"{out}/raw-c{c}{suf}.json"
raw = json.load(open(raw)) if os.path.exists(raw) else None
p = f"{out}/{label}-c{c}{suf}.json"
if not os.path.exists(p):
    print(f"{label + suf:<6} c={c:>3} (no result)"); sys.exit()
r = json.load(open(p))
rel = lambda k: (r[k] / raw[k]) if raw else 0
print(f"{label + suf:<6} c={c:>3} n={r['num_prompts']:>3} failed={r['num_prompts'] - r['completed']} tok/s={r['total_token_throughput']:.0f} "
      f"vs_raw={rel('total_token_throughput'):.3f} dur={r['duration']:.2f}s ttft_p50={r['median_ttft_ms']:.1f}ms "
      f"(x{rel('median_ttft_ms'):.3f}) ttft_p99={r['p99_ttft_ms']:.1f} itl_p50={r['median_itl_ms']:.2f}ms itl_p99={r['p99_itl_ms']:.2f}")
PY
}
OPENAI_API_KEY=$KEY PYTHONPATH=/tmp/site python3 -m vllm.entrypoints.cli.main bench serve --backend openai-chat \
  --endpoint /v1/chat/completions --base-url http://127.0.0.1:8000 --model qwen2.5-7b --tokenizer /tmp/q7 \
  --dataset-name random --random-input-len 256 --random-output-len 256 --ignore-eos --num-prompts 256 \
  --max-concurrency 128 --seed 7 > $OUT/warm.log 2>&1
log warmed
seed=100 edge_p=0 edge_g=0
for rep in $(seq "$REPEAT"); do
[[ $rep == 1 ]] || SUF=-r$rep
for c in $CONCURRENCIES; do
  (( rep == 1 || $(date +%s) - t0 < SWEEP_DEADLINE )) || { log "repeat $rep c=$c skipped: past ${SWEEP_DEADLINE} s"; continue; }
  case $c in 1) n=16 ;; 32) n=128 ;; 128) n=256 ;; esac
  seed=$((seed + 10))
  order="raw edge"; [[ $c == 32 ]] && order="edge raw"
  (( rep % 2 == 0 )) && { [[ $order == "raw edge" ]] && order="edge raw" || order="raw edge"; }
  for path in $order; do
    if [[ $path == raw ]]; then bench raw http://127.0.0.1:8000 "$KEY" $c $n $seed
    else
      read -r p0 g0 < <(counters)
      bench edge https://127.0.0.1:18443 "$VKEY" $c $n $((seed + 1))
      read -r p1 g1 < <(counters)
      edge_p=$((edge_p + p1 - p0)) edge_g=$((edge_g + g1 - g0))
    fi
  done
  line raw $c; line edge $c
done
done
sleep 1
python3 - "$edge_p" "$edge_g" <<'PY' | tee -a $OUT/summary.txt
import json, os, sys, urllib.request
req = urllib.request.Request('http://127.0.0.1:4000/key/list?key_alias=bench&return_full_object=true',
                             headers={'Authorization': 'Bearer ' + os.environ['LITELLM_MASTER_KEY']})
u = json.load(urllib.request.urlopen(req))['keys'][0]['gpuserve_usage']
vp, vg = int(sys.argv[1]), int(sys.argv[2])
print(f"accounting: keyd counted prompt={u['prompt_tokens']} completion={u['completion_tokens']} requests={u['requests']}; "
      f"vLLM counters over the edge runs prompt={vp} generation={vg}; "
      f"ratio prompt={u['prompt_tokens'] / max(vp, 1):.4f} completion={u['completion_tokens'] / max(vg, 1):.4f}")
PY
ps -o pid,rss,args -p $KPID | cut -c1-120 | tee -a $OUT/summary.txt
cp /tmp/vllm.log /tmp/keyd.log /tmp/ng/error.log $OUT/ 2>/dev/null
stop_servers; sleep 2
(cd $OUT && tar -czf /tmp/results.tar.gz --exclude=summary.txt . && find . -mindepth 1 ! -name summary.txt -delete && mv /tmp/results.tar.gz .)
log done
