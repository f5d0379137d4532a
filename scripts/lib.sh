#!/usr/bin/env bash
# Shared set-up for scripts/up, scripts/test and .ci/run: install what draas needs on Debian.

need() { command -v "$1" >/dev/null 2>&1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif need sudo; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1
  fi
}

apt_updated=""
# ensure_packages CMD:PACKAGE ...: apt-get install PACKAGE unless CMD is on PATH.
ensure_packages() {
  local missing=()
  for pair in "$@"; do
    need "${pair%%:*}" || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  echo "installing: ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  need cargo && return 0
  ensure_packages curl:curl
  echo "installing the Rust toolchain with rustup" >&2
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile default >&2
  . "$HOME/.cargo/env"
}

ensure_base() {
  ensure_packages cc:build-essential pkg-config:pkg-config curl:curl jq:jq redis-server:redis-server
  ensure_rust
}

# Headless Chromium for the dashboard test (tests/tests/board.rs), from Debian.
ensure_chromium() {
  ensure_packages chromium:chromium
}
