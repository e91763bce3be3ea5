# shellcheck shell=bash
# Source this file to get the test environment in the current shell:
#   . tests/harness/env.sh
# It sets variables only; tests/harness/setup.sh installs what is missing.
#
#   GPUSERVE_CACHE_DIR      caches kept between runs (image rootfs, venv stamp, wheelhouse)
#   GPUSERVE_VENV           the controller venv with the pinned toolchain (tests/requirements.txt)
#   GPUSERVE_TEST_IMAGE     the systemd image Molecule boots
#   GPUSERVE_SSLYZE         the sslyze TLS scanner (own venv)
#   GPUSERVE_TEST_WHEELHOUSE  wheels from the controller's pip find-links, mounted into targets
GPUSERVE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export GPUSERVE_REPO
export GPUSERVE_CACHE_DIR="${GPUSERVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuserve-vllm}"
export GPUSERVE_VENV="${GPUSERVE_VENV:-$GPUSERVE_REPO/.venv}"
export GPUSERVE_TEST_IMAGE="${GPUSERVE_TEST_IMAGE:-localhost/gpuserve/debian12-systemd:latest}"
export GPUSERVE_SSLYZE="$GPUSERVE_CACHE_DIR/sslyze-venv/bin/sslyze"
export GPUSERVE_TEST_WHEELHOUSE="${GPUSERVE_TEST_WHEELHOUSE:-$GPUSERVE_CACHE_DIR/wheelhouse}"

# Ansible finds this collection as gpuserve.vllm through a link in the standard layout;
# the bundled collections of the `ansible` package are found on sys.path.
export GPUSERVE_COLLECTIONS="$GPUSERVE_CACHE_DIR/collections"
export ANSIBLE_COLLECTIONS_PATH="$GPUSERVE_COLLECTIONS"
export GPUSERVE_COLLECTION_ROOT="$GPUSERVE_COLLECTIONS/ansible_collections/gpuserve/vllm"

# Podman on hosts with cgroup v1 / hybrid hierarchies needs runc and cgroupfs, and
# container ulimits must fit the host's hard limits. On cgroup v2 hosts nothing changes.
if [[ -z "${CONTAINERS_CONF:-}" ]] && [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != "cgroup2fs" ]]; then
  export CONTAINERS_CONF="$GPUSERVE_CACHE_DIR/containers.conf"
fi

if [[ -d "$GPUSERVE_VENV/bin" ]]; then
  export PATH="$GPUSERVE_VENV/bin:$PATH"
fi
