#!/usr/bin/env bash
# Install what the tests and the demo need on a fresh Debian/Ubuntu controller:
# podman + runc + debootstrap (apt), the pinned Python toolchain (tests/requirements.txt),
# the systemd test image, the wheelhouse, and this collection in Ansible's layout.
# Safe to re-run: every step is skipped when already done.
set -euo pipefail
# shellcheck source=tests/harness/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
mkdir -p "$GPUSERVE_CACHE_DIR"
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# 1. System packages.
need=()
# promtool / amtool (observability rule tests) come with Debian's prometheus packages; njs
# (the nginx_tls usage filter's unit test) with Debian's njs package.
for pair in podman:podman runc:runc debootstrap:debootstrap newuidmap:uidmap slirp4netns:slirp4netns \
            promtool:prometheus amtool:prometheus-alertmanager njs:njs; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  if [[ $(id -u) -ne 0 ]]; then echo "setup: run as root, or install: ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" fuse-overlayfs containernetworking-plugins iptables >/dev/null
fi

# 2. Controller toolchain.
py=""
for cand in python3.11 python3.12 python3.13 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    py=$(command -v "$cand"); break
  fi
done
[[ -n "$py" ]] || { echo "setup: Python >= 3.11 is needed on the controller" >&2; exit 1; }
stamp="$GPUSERVE_VENV/.requirements.sha256"
want=$(sha256sum "$GPUSERVE_REPO/tests/requirements.txt" | cut -d' ' -f1)
if [[ ! -x "$GPUSERVE_VENV/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "creating $GPUSERVE_VENV from tests/requirements.txt"
  "$py" -m venv "$GPUSERVE_VENV"
  "$GPUSERVE_VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$GPUSERVE_VENV/bin/pip" install -q -r "$GPUSERVE_REPO/tests/requirements.txt"
  echo "$want" >"$stamp"
fi
export PATH="$GPUSERVE_VENV/bin:$PATH"

# 2b. sslyze (TLS scan of nginx_tls) in its own venv: its pinned dependencies differ.
sslyze_venv="$GPUSERVE_CACHE_DIR/sslyze-venv"
want=$(sha256sum "$GPUSERVE_REPO/tests/requirements-sslyze.txt" | cut -d' ' -f1)
if [[ "$(cat "$sslyze_venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
  log "creating $sslyze_venv"
  rm -rf "$sslyze_venv"
  "$py" -m venv "$sslyze_venv"
  "$sslyze_venv/bin/pip" install -q -r "$GPUSERVE_REPO/tests/requirements-sslyze.txt"
  echo "$want" >"$sslyze_venv/.requirements.sha256"
fi

# 3. Podman settings for cgroup v1 / hybrid hosts (see env.sh).
if [[ -n "${CONTAINERS_CONF:-}" ]] && [[ "$CONTAINERS_CONF" == "$GPUSERVE_CACHE_DIR/containers.conf" ]]; then
  nofile=$(ulimit -Hn); [[ "$nofile" == unlimited ]] && nofile=1048576
  ((nofile > 65536)) && nofile=65536
  nproc=$(ulimit -Hu); [[ "$nproc" == unlimited ]] && nproc=32768
  ((nproc > 32768)) && nproc=32768
  cat >"$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
fi

# 4. The systemd test image (cached rootfs; rebuilt only when its inputs change).
if [[ "$GPUSERVE_TEST_IMAGE" == localhost/gpuserve/* ]]; then
  "$GPUSERVE_REPO/tests/harness/build-image.sh"
fi

# 5. Wheelhouse: wheels from the controller's pip find-links (pip config), so targets get
#    the same local wheels the controller uses (e.g. a CPU torch build no index serves).
mkdir -p "$GPUSERVE_TEST_WHEELHOUSE"
links=$( (pip config list 2>/dev/null || true) | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p" | tr ' ' '\n' | sort -u)
for dir in $links; do
  dir=${dir#file://}
  [[ -d "$dir" ]] || continue
  for whl in "$dir"/*.whl; do
    [[ -e "$whl" ]] || continue
    [[ -e "$GPUSERVE_TEST_WHEELHOUSE/$(basename "$whl")" ]] || ln "$whl" "$GPUSERVE_TEST_WHEELHOUSE/" 2>/dev/null \
      || cp "$whl" "$GPUSERVE_TEST_WHEELHOUSE/"
  done
done

# 6. This collection where Ansible looks for gpuserve.vllm.
mkdir -p "$(dirname "$GPUSERVE_COLLECTION_ROOT")"
ln -sfn "$GPUSERVE_REPO" "$GPUSERVE_COLLECTION_ROOT"
log "ready: venv $GPUSERVE_VENV, image $GPUSERVE_TEST_IMAGE"
