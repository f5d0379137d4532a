#!/usr/bin/env bash
# Shared set-up for scripts/up, scripts/test and .ci/run: install what draas needs on Debian.

need() { command -v "$1" >/dev/null 2>&1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif need sudo; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1
  fi
}

apt_updated=""
# apt_install PACKAGE ...: apt-get install them (the package lists updated once per run).
apt_install() {
  [ $# -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  echo "installing: $*" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ensure_packages CMD:PACKAGE ...: apt-get install PACKAGE unless CMD is on PATH.
ensure_packages() {
  local missing=()
  for pair in "$@"; do
    need "${pair%%:*}" || missing+=("${pair#*:}")
  done
  apt_install "${missing[@]}"
}

# The toolchain the workspace needs (rust-version in Cargo.toml): an older cargo on PATH, such
# as Debian 12's own 1.63, does not count, and rustup's is installed ahead of it.
rust_is_recent() {
  local want have
  want=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml")
  have=$(cargo --version 2>/dev/null | awk '{print $2}')
  [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n 1)" = "$want" ]
}

ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  if need cargo && rust_is_recent; then return 0; fi
  need cargo && echo "$(cargo --version) is older than the workspace needs; installing a current one" >&2
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

# dockerd_answers: does the local engine answer on its unix socket?
dockerd_answers() {
  as_root curl -sf --max-time 2 --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1
}

# ensure_docker: install Debian's docker.io when dockerd is missing, and start dockerd (as root,
# on its unix socket, log in /var/log/draas-dockerd.log) when none answers. The docker tests
# need a real engine: this fails rather than let them skip.
ensure_docker() {
  ensure_packages dockerd:docker.io
  dockerd_answers && return 0
  local log=/var/log/draas-dockerd.log
  echo "starting dockerd (log: $log)" >&2
  as_root sh -c "setsid nohup dockerd >>'$log' 2>&1 </dev/null &"
  local i
  for i in $(seq 1 120); do
    dockerd_answers && return 0
    sleep 0.5
  done
  echo "dockerd did not answer within 60 s; the end of its log:" >&2
  as_root tail -n 40 "$log" >&2 || true
  return 1
}

# ensure_libs PACKAGE ...: apt-get install the library packages dpkg does not list as installed.
ensure_libs() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  apt_install "${missing[@]}"
}

# find_drasi_server: the real drasi-server release the tests run against (a directory with
# bin/drasi-server and plugins/): DRASI_SERVER_DIR, else ../shared/drasi-server beside the
# clone (where CI provides it). Exports DRASI_SERVER_BIN and DRASI_PLUGINS_DIR, and installs
# the server's runtime libraries; without one, says loudly that those tests are skipped.
find_drasi_server() {
  local dir="${DRASI_SERVER_DIR:-$(cd .. && pwd)/shared/drasi-server}"
  if [ -x "$dir/bin/drasi-server" ] && [ -d "$dir/plugins" ]; then
    ensure_libs libjq1 libonig5
    export DRASI_SERVER_BIN="$dir/bin/drasi-server" DRASI_PLUGINS_DIR="$dir/plugins"
    echo "real drasi-server: $DRASI_SERVER_BIN ($("$DRASI_SERVER_BIN" --version 2>/dev/null | head -n 1))" >&2
  else
    echo "*** no drasi-server release at $dir (set DRASI_SERVER_DIR): the tests against the real server are SKIPPED ***" >&2
  fi
}

# ensure_postgres: Debian's PostgreSQL server binaries (the pipeline tests start their own
# cluster as a non-root user on a free loopback port).
ensure_postgres() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ensure_libs postgresql
}
