#!/usr/bin/env bash
# Build the systemd test image used by the Molecule scenarios from a debootstrap
# Debian 12 base, without any image registry.
#
# The image holds only what a freshly installed server has (systemd, dbus, python3,
# sudo, openssh-server, ca-certificates): everything the roles need they install
# themselves. The CA certificates the controller trusts locally (Debian's
# /usr/local/share/ca-certificates) are copied in so that targets can reach package
# indexes through a TLS-intercepting proxy, as corporate networks often require.
#
# Environment:
#   GPUSERVE_TEST_IMAGE   image name to produce   (default localhost/gpuserve/debian12-systemd:latest)
#   GPUSERVE_DEBIAN_MIRROR  debootstrap mirror      (default http://deb.debian.org/debian)
#   GPUSERVE_CACHE_DIR    where the rootfs tarball is cached between runs
#                         (default ${XDG_CACHE_HOME:-$HOME/.cache}/gpuserve-vllm)
#   CONTAINER_ENGINE      podman (default) or docker
set -euo pipefail

image="${GPUSERVE_TEST_IMAGE:-localhost/gpuserve/debian12-systemd:latest}"
mirror="${GPUSERVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${GPUSERVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuserve-vllm}"
engine="${CONTAINER_ENGINE:-podman}"
suite=bookworm
packages=systemd,systemd-sysv,dbus,python3,sudo,openssh-server,iproute2,ca-certificates,procps

mkdir -p "$cache"
# The cached base depends on the package list and the local CAs we copy in.
ca_sum=$( (cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true) | sha256sum | cut -c1-12)
key=$(printf '%s %s %s' "$suite" "$packages" "$mirror" | sha256sum | cut -c1-12)
tarball="$cache/debian12-systemd-$key-$ca_sum.tar"
label="gpuserve.rootfs=$key-$ca_sum"

if "$engine" image inspect "$image" --format '{{ index .Labels "gpuserve.rootfs" }}' 2>/dev/null \
    | grep -qx "$key-$ca_sum"; then
  echo "build-image: $image is current ($label)"
  exit 0
fi

if [[ ! -s "$tarball" ]]; then
  command -v debootstrap >/dev/null || { echo "build-image: debootstrap is not installed" >&2; exit 1; }
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "build-image: debootstrap $suite from $mirror (a few minutes, cached afterwards)"
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  # Same apt sources a Debian server has (main + updates + security).
  cat >"$root/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
SRC
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
  fi
  # Container hygiene: no getty, no udev triggers, a machine-id created at boot.
  rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
  touch "$root/etc/machine-id"
  chroot "$root" systemctl mask getty.target console-getty.service systemd-udevd.service \
    systemd-udev-trigger.service systemd-remount-fs.service sys-kernel-debug.mount >/dev/null 2>&1 || true
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
fi

echo "build-image: importing $tarball as $image"
"$engine" import --change 'CMD ["/sbin/init"]' --change "LABEL $label" \
  --change 'ENV container=podman' "$tarball" "$image" >/dev/null
echo "build-image: $image ready"
