#!/usr/bin/env bash
# Installs everything plexus's build, tests and demo need on a Debian 12 machine.
# Idempotent: re-running it changes nothing once the machine is set up.
#
# - containerd 1.7 from the Debian 13 suite (NRI support), pinned so that nothing
#   else is taken from that suite (see shared/reference/containerd-e2e.md);
# - runc, the reference CNI plugins, a static busybox (for the local pause image),
#   iproute2;
# - checks that the pinned Rust toolchain and cargo-nextest are there;
# - checks that a nightly toolchain is there and installs cargo-fuzz with it (the fuzz
#   targets of `make fuzz-smoke` / `make fuzz`); nightly itself is not downloaded here.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs Debian packages); try: sudo $0"
    exit 1
  fi
}

apt_packages=(containerd runc containernetworking-plugins busybox-static iproute2 kmod procps util-linux)

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
  log "adding the Debian 13 suite from $mirror, pinned to containerd only"
  cat > /etc/apt/sources.list.d/plexus-trixie.sources <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  cat > /etc/apt/preferences.d/plexus-trixie-containerd <<PIN
Package: containerd
Pin: release n=trixie
Pin-Priority: 990

Package: *
Pin: release n=trixie
Pin-Priority: -10
PIN
}

install_packages() {
  if have_all_packages; then
    log "Debian packages already installed ($(containerd --version | awk '{print $3}'))"
    return
  fi
  need_root
  [ -f /etc/apt/sources.list.d/plexus-trixie.sources ] || add_trixie_for_containerd
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Never `-t trixie`: a target release overrides the negative pin (containerd-e2e.md).
  apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  containerd_is_17 || { log "containerd >= 1.7 was not installed: $(containerd --version 2>&1)"; exit 1; }
  log "installed containerd $(containerd --version | awk '{print $3}')"
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
check_rust
check_fuzz
log "ready"
