#!/usr/bin/env bash
# The test command: lint, sanity, unit tests, Molecule scenarios, against real components.
#   tests/run.sh              everything
#   tests/run.sh lint sanity unit      a subset (stages: lint sanity unit molecule)
#   MOLECULE_SCENARIOS="default" tests/run.sh molecule
# Installs what it needs first (tests/harness/setup.sh). Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/harness/setup.sh"
# shellcheck source=tests/harness/env.sh
. "$here/harness/env.sh"

stages=("$@")
((${#stages[@]})) || stages=(lint sanity unit molecule)
declare -A result=()
started=$(date +%s)
log() { printf '\n=== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

run_lint() {
  cd "$GPUSERVE_COLLECTION_ROOT"
  ansible-lint --profile production --offline
}

run_sanity() {
  # ansible-test wants a clean collection tree: test a copy of the files git knows.
  local root="$GPUSERVE_CACHE_DIR/sanity/ansible_collections/gpuserve/vllm"
  rm -rf "$root" && mkdir -p "$root"
  (cd "$GPUSERVE_REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$root")
  cd "$root"
  git init -q . && git add -A
  # ansible-test bootstraps pip in its venvs with a script from its CI file host; where that
  # host is unreachable, use the stand-in that does the same with ensurepip + the index.
  local getpip="$HOME/.ansible/test/cache/get_pip_24_2.py"
  if [[ ! -s "$getpip" ]]; then
    mkdir -p "$(dirname "$getpip")"
    curl -fsSL --max-time 20 -o "$getpip" https://ci-files.testing.ansible.com/ansible-test/get-pip-24.2.py 2>/dev/null \
      || cp "$GPUSERVE_REPO/tests/harness/get_pip_offline.py" "$getpip"
  fi
  ansible-test sanity --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    --requirements --color no
}

run_unit() {
  cd "$GPUSERVE_COLLECTION_ROOT"
  local rc=0
  # tests/integration: modules against contract servers (and real services when configured);
  # -rs prints why a test was skipped (e.g. no real LiteLLM configured).
  python -m pytest tests/unit tests/integration -q -rs -p no:cacheprovider || rc=$?
  if ((rc == 5)); then echo "unit: no tests were collected" >&2; fi
  return "$rc"
}

run_molecule() {
  cd "$GPUSERVE_COLLECTION_ROOT"
  local scenarios="${MOLECULE_SCENARIOS:-$(cd molecule && ls -d */ | tr -d / | tr '\n' ' ')}"
  local s
  for s in $scenarios; do
    log "molecule test -s $s"
    molecule test -s "$s"
  done
}

failed=0
for stage in "${stages[@]}"; do
  log "stage: $stage"
  t0=$(date +%s)
  if ( "run_$stage" ); then result[$stage]="passed"; else result[$stage]="FAILED"; failed=1; fi
  result[$stage]+=" ($(( $(date +%s) - t0 )) s)"
done

log "summary ($(( $(date +%s) - started )) s)"
passed=0; nfail=0
for stage in "${stages[@]}"; do
  printf '  %-10s %s\n' "$stage" "${result[$stage]}"
  [[ ${result[$stage]} == passed* ]] && passed=$((passed + 1)) || nfail=$((nfail + 1))
done
echo "stages: $passed passed, $nfail failed"
exit "$failed"
