#!/usr/bin/env bash
# One device call: real gpu_probe on the H200, then the engine the vllm_engine role renders
# (gpu profile, Qwen2.5-7B shape, dummy weights) started twice: cold, then with the compile
# cache, each time waited for and warmed by the real vllm_health module.
set -u
REPO=$PWD
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 VLLM_USE_FLASHINFER_SAMPLER=0
t0=$(date +%s)
(cd /tmp/stage && mkdir -p x && cat part* | tar -x -C x && rm -f part* && \
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site x/*.whl) || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ans .whl/*.whl || exit 1
mkdir -p /tmp/coll/ansible_collections/gpuserve && ln -sfn "$REPO" /tmp/coll/ansible_collections/gpuserve/vllm
echo "install: $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/nvidia-smi.txt
python3 tests/harness/make_tiny_model.py --shape qwen2.5-7b /tmp/q7

mod() {  # mod NAME JSON_ARGS -> module JSON on stdout
  echo "{\"ANSIBLE_MODULE_ARGS\": $2}" > /tmp/args.json
  PYTHONPATH=/tmp/coll:/tmp/ans python3 -m ansible_collections.gpuserve.vllm.plugins.modules.$1 /tmp/args.json
}
{
  echo "## gpu_probe: model_config Qwen2.5-7B shape, max_model_len 16384, max_num_seqs 128, util 0.90, cuda_version 13.0"
  mod gpu_probe '{"model_config": "/tmp/q7/config.json", "max_model_len": 16384, "max_num_seqs": 128, "gpu_memory_utilization": 0.9, "cuda_version": "13.0"}'
  echo; echo "## gpu_probe: tensor_parallel_size 2 (one GPU here)"
  mod gpu_probe '{"model_config": "/tmp/q7/config.json", "max_model_len": 16384, "max_num_seqs": 128, "tensor_parallel_size": 2, "cuda_version": "13.0"}'
  echo; echo "## gpu_probe: model_params 70e9 (80 layers, 8 KV heads, head_dim 128), bf16, fail_on_unfit"
  mod gpu_probe '{"model_params": 70e9, "num_layers": 80, "num_kv_heads": 8, "num_attention_heads": 64, "head_dim": 128, "max_model_len": 32768, "fail_on_unfit": true, "cuda_version": "13.0"}'
  echo; echo "## gpu_probe: min_driver_version 999"
  mod gpu_probe '{"min_driver_version": "999.0"}'
} > $OUT/gpu_probe.txt 2>&1
cat $OUT/gpu_probe.txt | cut -c1-3000

# The engine exactly as the role's unit renders it, with the role's environment file.
mkdir -p /var/lib/vllm/hf /var/cache/vllm/q7
python3 - .gpu/run/unit > /tmp/argv.txt <<'PY'
import shlex, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
line = [l for l in text.splitlines() if l.startswith("ExecStart=")][0][len("ExecStart="):]
print("\n".join(shlex.split(line)))
PY
cp .gpu/run/unit $OUT/unit.txt
mapfile -t ARGV < /tmp/argv.txt
ARGV=(python3 -m vllm.entrypoints.cli.main "${ARGV[@]:1}")
echo "engine argv: ${ARGV[*]}" | tee $OUT/argv.txt
set -a; . .gpu/run/env; set +a
KEY=$VLLM_API_KEY
start() {
  PYTHONPATH=/tmp/site setsid "${ARGV[@]}" > $OUT/vllm-$1.log 2>&1 < /dev/null &
  PID=$!
}
health='{"url": "http://127.0.0.1:8000", "api_key": "'$KEY'", "served_model_name": "qwen2.5-7b", "expected_max_model_len": 16384, "timeout": 400, "warmup_requests": 3, "warmup_kind": "chat"}'
for run in cold cached; do
  start $run
  mod vllm_health "$health" > $OUT/health-$run.json 2>&1
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], {k: r.get(k) for k in ('failed','msg','time_to_healthy','warmup_latencies_ms','version','max_model_len')})" $OUT/health-$run.json $run
  K1=${KEY:0:10} K2=${KEY:10} python3 -c 'import glob, os; k = os.environ["K1"] + os.environ["K2"]; hits = [p for p in glob.glob("/proc/[0-9]*/cmdline") if k.encode() in open(p, "rb").read()]; print("processes with the API key on their command line:", hits)'
  grep -E "torch.compile takes|Loading weights took|init engine|Graph capturing finished|Directly load the compiled graph|Compiling a graph" $OUT/vllm-$run.log | cut -c1-200 | tail -6
  kill -TERM $PID; for i in $(seq 60); do kill -0 $PID 2>/dev/null || break; sleep 1; done; kill -KILL -$PID 2>/dev/null
  sleep 2
done
echo "total: $(( $(date +%s) - t0 )) s"
