#!/usr/bin/env bash
# Installs everything plexus's build, tests and demo need on a Debian 12 machine.
# Idempotent: re-running it changes nothing once the machine is set up.
#
# - containerd 1.7 from the Debian 13 suite (NRI support), pinned so that nothing
#   else is taken from that suite (see shared/reference/containerd-e2e.md);
# - runc, the reference CNI plugins, a static busybox (for the local pause image),
#   iproute2, protoc (protobuf-compiler: the containerd-client crate's build compiles
#   containerd's API protos with it), promtool (Debian's prometheus package: the tests check
#   the shipped alert rules and a live /metrics with it); the packages' services (containerd,
#   prometheus) are not started by the install (a temporary policy-rc.d): the tests run
#   private instances only; GNU time (the paths bench reads the shim's peak RSS with it);
# - kubectl (for `kubectl kustomize`) from Debian 13's kubernetes-client when no kubectl
#   with kustomize is there;
# - a Python virtualenv outside the checkout ($PLEXUS_VENV, /var/cache/plexus/venv) with
#   PyPI's helm-python-sdk (Helm v4's library) and kubernetes-validate, for the chart tests;
# - checks that the pinned Rust toolchain and cargo-nextest are there;
# - checks that a nightly toolchain is there and installs cargo-fuzz with it (the fuzz
#   targets of `make fuzz-smoke` / `make fuzz`); nightly itself is not downloaded here.
set -euo pipefail

PLEXUS_VENV=${PLEXUS_VENV:-/var/cache/plexus/venv}
python_packages=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0)

log() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs Debian packages); try: sudo $0"
    exit 1
  fi
}

apt_packages=(containerd runc containernetworking-plugins busybox-static iproute2 protobuf-compiler prometheus kmod procps util-linux python3-venv time)

have_all_packages() {
  local p
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
  containerd_is_17
}

containerd_is_17() {
  command -v containerd >/dev/null 2>&1 || return 1
  containerd --version 2>/dev/null | grep -Eq ' (v)?1\.([7-9]|[1-9][0-9])\.| (v)?2\.'
}

# The mirror this machine already uses for bookworm (never a hard-coded host).
bookworm_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '
      BEGIN { RS=""; FS="\n" }
      /Suites:[^\n]*bookworm([ \n]|$)/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, " "); print u[1]; exit }
      }' "$f")
    if [ -n "$uri" ] && ! printf '%s' "$uri" | grep -q security; then
      printf '%s\n' "$uri"; return 0
    fi
  done
  if [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
    [ -n "$uri" ] && { printf '%s\n' "$uri"; return 0; }
  fi
  return 1
}

add_trixie_for_containerd() {
  local mirror
  mirror=$(bookworm_mirror) || { log "cannot find the bookworm mirror in /etc/apt/sources.list.d/*.sources or sources.list"; exit 1; }
  log "adding the Debian 13 suite from $mirror, pinned to containerd and kubectl only"
  cat > /etc/apt/sources.list.d/plexus-trixie.sources <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

# The only packages taken from trixie: containerd (NRI) and kubernetes-client (a kubectl
# with kustomize v5; bookworm's is 1.20), whose trixie package is a transition to kubectl.
trixie_pin() {
  cat <<PIN
Package: containerd kubernetes-client kubectl
Pin: release n=trixie
Pin-Priority: 990

Package: *
Pin: release n=trixie
Pin-Priority: -10
PIN
}

write_trixie_pin() {
  local pin=/etc/apt/preferences.d/plexus-trixie-containerd
  if [ -f "$pin" ] && [ "$(cat "$pin")" = "$(trixie_pin)" ]; then
    return 1
  fi
  need_root
  trixie_pin > "$pin"
}

install_packages() {
  if have_all_packages; then
    log "Debian packages already installed ($(containerd --version | awk '{print $3}'))"
    return
  fi
  need_root
  [ -f /etc/apt/sources.list.d/plexus-trixie.sources ] || add_trixie_for_containerd
  write_trixie_pin || true
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No package starts its service (a system containerd or Prometheus): policy-rc.d says
  # "forbidden" for the duration of the install, unless the machine has its own.
  local policy=/usr/sbin/policy-rc.d own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  # Never `-t trixie`: a target release overrides the negative pin (containerd-e2e.md).
  local rc=0
  apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null || rc=$?
  [ -z "$own_policy" ] || rm -f "$policy"
  [ "$rc" -eq 0 ] || { log "apt-get install failed ($rc)"; exit "$rc"; }
  containerd_is_17 || { log "containerd >= 1.7 was not installed: $(containerd --version 2>&1)"; exit 1; }
  log "installed containerd $(containerd --version | awk '{print $3}')"
}

kubectl_has_kustomize() {
  command -v kubectl >/dev/null 2>&1 || return 1
  kubectl version --client 2>/dev/null | grep -Eq '^Kustomize Version: v[5-9]'
}

# Any kubectl with kustomize v5 will do (the chart tests compare parsed objects); without
# one, Debian 13's kubernetes-client.
install_kubectl() {
  if kubectl_has_kustomize; then
    log "kubectl with kustomize present ($(kubectl version --client 2>/dev/null | head -1))"
    return
  fi
  need_root
  [ -f /etc/apt/sources.list.d/plexus-trixie.sources ] || add_trixie_for_containerd
  write_trixie_pin || true
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
  kubectl_has_kustomize || { log "kubectl kustomize does not work after installing kubernetes-client: $(kubectl version --client 2>&1)"; exit 1; }
  log "installed $(kubectl version --client | head -1)"
}

venv_ready() {
  [ -x "$PLEXUS_VENV/bin/python" ] || return 1
  "$PLEXUS_VENV/bin/python" - "${python_packages[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
import helm_python.chart, kubernetes_validate  # the native library loads
PY
}

install_venv() {
  if venv_ready; then
    log "python virtualenv ready in $PLEXUS_VENV"
    return
  fi
  mkdir -p "$(dirname "$PLEXUS_VENV")"
  /usr/bin/python3 -m venv "$PLEXUS_VENV"
  "$PLEXUS_VENV/bin/pip" install -q "${python_packages[@]}"
  venv_ready || { log "the virtualenv in $PLEXUS_VENV does not import helm_python and kubernetes_validate"; exit 1; }
  log "installed ${python_packages[*]} into $PLEXUS_VENV"
}

check_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    for d in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
      [ -x "$d/cargo" ] && export PATH="$d:$PATH" && break
    done
  fi
  command -v cargo >/dev/null 2>&1 || { log "cargo not found: install the Rust toolchain named in rust-toolchain.toml (rustup)"; exit 1; }
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest from crates.io"
    cargo install --locked cargo-nextest >/dev/null
  fi
}

# cargo-fuzz needs a nightly toolchain (libFuzzer and sanitizer flags). rustup cannot
# download one on machines limited to the package registries, so it must already be
# installed; cargo-fuzz itself comes from crates.io.
check_fuzz() {
  if ! command -v rustup >/dev/null 2>&1 || ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    log "no nightly Rust toolchain: the fuzz targets (make fuzz-smoke, part of make test) need one;"
    log "install it with: rustup toolchain install nightly --profile minimal"
    exit 1
  fi
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz from crates.io with the nightly toolchain"
    cargo +nightly install --locked cargo-fuzz >/dev/null
  fi
}

install_packages
if write_trixie_pin; then log "extended the trixie pin to kubernetes-client/kubectl"; fi
install_kubectl
install_venv
check_rust
check_fuzz
log "ready"
