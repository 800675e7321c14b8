# shellcheck shell=bash
# Helpers shared by the scripts in scripts/: repo paths, logging, exit-time cleanup, ports.
#
# Source it (don't run it):  source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# It installs EXIT/INT/TERM/HUP traps, so a sourcing script must register its cleanups with
# `at_exit FUNCTION` instead of calling `trap ... EXIT` itself (which would replace them).

if [[ -n "${_AUTUMN_COMMON_SH:-}" ]]; then
    return 0
fi
_AUTUMN_COMMON_SH=1

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export REPO_ROOT

# Where the scripts keep their throwaway state (demo database, logs); gitignored.
# shellcheck disable=SC2034  # used by the scripts that source this file
RUN_DIR="$REPO_ROOT/.run"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 1
}

# --- cleanup on exit ---------------------------------------------------------------------
# One EXIT trap runs every registered function, newest first, whatever ends the script
# (success, `set -e` failure, Ctrl-C, kill). Registering the same function twice is a no-op,
# so helpers such as pg_start can register their own cleanup.
_AT_EXIT_FUNCS=()

at_exit() {
    local fn
    for fn in "${_AT_EXIT_FUNCS[@]}"; do
        [[ "$fn" == "$1" ]] && return 0
    done
    _AT_EXIT_FUNCS+=("$1")
}

_run_at_exit() {
    local rc=$? i
    # A second Ctrl-C while cleaning up must not leave a cluster or server behind.
    trap '' INT TERM HUP
    set +e
    for ((i = ${#_AT_EXIT_FUNCS[@]} - 1; i >= 0; i--)); do
        "${_AT_EXIT_FUNCS[i]}"
    done
    exit "$rc"
}

trap _run_at_exit EXIT
# Turning signals into exits makes bash run the EXIT trap (it does not on a bare signal death).
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- ports -------------------------------------------------------------------------------
# The system python3 is used (not the venv) so these work before the venv exists.

# Print a TCP port on 127.0.0.1 that is free right now (the kernel picks it).
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Succeed if nothing can be listening on 127.0.0.1:$1 (we can bind it ourselves).
port_is_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# Wait until `curl` gets any HTTP answer from URL $1, for at most $2 seconds (default 60).
# Optional $3: a PID that must stay alive meanwhile (fail fast when the server crashed).
wait_for_http() {
    local url="$1" timeout="${2:-60}" pid="${3:-}" deadline
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if curl -s -o /dev/null --max-time 2 "$url"; then
            return 0
        fi
        sleep 0.3
    done
    return 1
}

# Stop a background process we started: SIGTERM, up to $2 seconds (default 10), then SIGKILL.
stop_pid() {
    local pid="$1" grace="${2:-10}" deadline
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "process $pid ignored SIGTERM for ${grace}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Reap it if it is our child, so no zombie and no "Terminated" noise later.
    wait "$pid" 2>/dev/null || true
}

# --- interpreters ------------------------------------------------------------------------
# An interpreter of version $1 (e.g. 3.13): on PATH, else the newest in pyenv's folder.
# Each candidate must run and say its version: a pyenv shim for a version that is not
# selected exists on PATH but fails.
find_python() {
    local version="$1" candidate root="${PYENV_ROOT:-$HOME/.pyenv}"
    for candidate in "$(command -v "python$version" || true)" \
        "$(printf '%s\n' "$root"/versions/"$version".*/bin/python | sort -V | tail -n 1)"; do
        if [[ -x "$candidate" ]] && [[ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
            2>/dev/null)" == "$version" ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    warn "no Python $version found on PATH or in $root/versions"
    return 1
}
