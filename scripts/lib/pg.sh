# shellcheck shell=bash
# A throwaway PostgreSQL cluster for tests and benchmarks.
#
#   source scripts/lib/common.sh; source scripts/lib/pg.sh
#   pg_start   # initdb + start on 127.0.0.1:<free port>; exports PGHOST PGPORT PGUSER PGDATABASE
#   ...        # psql / pytest / a benchmark connect through those variables
#   pg_stop    # optional: pg_start registers it with at_exit, so it also runs on failure/Ctrl-C
#
# The cluster lives in a fresh `mktemp -d` directory (data, unix socket, server log) that
# pg_stop deletes. PostgreSQL refuses to run as root, so as root the cluster belongs to an
# unprivileged system user ($PG_OS_USER, created on first use).
# Knobs: PG_BINDIR (where initdb/pg_ctl are), PG_OS_USER (default autumnci), PG_START_TIMEOUT.

if [[ -n "${_AUTUMN_PG_SH:-}" ]]; then
    return 0
fi
_AUTUMN_PG_SH=1

PG_OS_USER="${PG_OS_USER:-autumnci}"
PG_BASE_DIR="" # the mktemp directory; empty while no cluster is running
PG_DATA_DIR=""
PG_LOG_FILE=""

# Find the server binaries: $PG_BINDIR, else the directory of the `initdb` on PATH (Debian's
# /usr/local/bin symlinks resolve to /usr/lib/postgresql/15/bin), else the newest Debian
# /usr/lib/postgresql/N/bin: Debian's packages do not put initdb on PATH.
_pg_find_bindir() {
    local initdb
    if [[ -z "${PG_BINDIR:-}" ]]; then
        if initdb="$(command -v initdb)"; then
            PG_BINDIR="$(dirname "$(readlink -f "$initdb")")"
        else
            initdb="$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)"
            PG_BINDIR="$(dirname "$initdb")"
        fi
    fi
    if [[ ! -x "$PG_BINDIR/initdb" || ! -x "$PG_BINDIR/pg_ctl" ]]; then
        warn "PostgreSQL server binaries (initdb, pg_ctl) not found in $PG_BINDIR;" \
            "install postgresql-15 or set PG_BINDIR"
        return 1
    fi
}

# Run a command as the cluster's owner: ourselves, or $PG_OS_USER when we are root.
_pg_as_owner() {
    if ((EUID != 0)); then
        "$@"
    elif command -v runuser >/dev/null; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        # su hands the words after `--` to the shell; "$@" keeps the arguments intact.
        # shellcheck disable=SC2016  # $@ is for the inner shell
        su -s /bin/sh "$PG_OS_USER" -- -c 'exec "$@"' pg-as-owner "$@"
    fi
}

# As root: make sure the unprivileged owner exists (idempotent, and safe if two runs race).
_pg_ensure_os_user() {
    ((EUID == 0)) || return 0
    id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
    log "creating system user $PG_OS_USER to own throwaway PostgreSQL clusters"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --user-group "$PG_OS_USER" \
        || id -u "$PG_OS_USER" >/dev/null 2>&1 \
        || { warn "could not create user $PG_OS_USER"; return 1; }
}

_pg_ctl() { _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_DATA_DIR" "$@"; }

# Start a cluster and export PGHOST/PGPORT/PGUSER/PGDATABASE. If it cannot, it says why,
# cleans up and returns 1: `if pg_start; then ...` works, and under `set -e` a bare
# `pg_start` stops the script.
pg_start() {
    if [[ -n "$PG_BASE_DIR" ]]; then
        warn "pg_start: a cluster is already running in $PG_BASE_DIR"
        return 1
    fi
    _pg_find_bindir || return 1
    _pg_ensure_os_user || return 1

    # /tmp rather than $TMPDIR: the owner must be able to reach it, and unix socket paths
    # are limited to ~100 characters.
    PG_BASE_DIR="$(mktemp -d /tmp/autumn-pg.XXXXXX)" || return 1
    at_exit pg_stop
    PG_DATA_DIR="$PG_BASE_DIR/data"
    PG_LOG_FILE="$PG_BASE_DIR/postgres.log"
    local sock_dir="$PG_BASE_DIR/socket"
    if ! mkdir "$sock_dir" || { ((EUID == 0)) && ! chown -R "$PG_OS_USER:" "$PG_BASE_DIR"; }; then
        pg_stop
        return 1
    fi

    log "initdb (PostgreSQL $("$PG_BINDIR/pg_ctl" --version | awk '{print $3}')) in $PG_DATA_DIR"
    # cd: initdb/postgres must not start in a directory their owner cannot read (e.g. /root).
    # trust auth: reachable only from 127.0.0.1 and our private socket dir, and thrown away.
    # --locale=C: the same sort order everywhere, whatever locales the machine has.
    if ! (cd "$PG_BASE_DIR" && _pg_as_owner "$PG_BINDIR/initdb" -D "$PG_DATA_DIR" \
        -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$PG_BASE_DIR/initdb.log" 2>&1)
    then
        cat "$PG_BASE_DIR/initdb.log" >&2
        warn "initdb failed"
        pg_stop
        return 1
    fi

    # Durability is pointless for a throwaway test database; these make it much faster.
    cat >>"$PG_DATA_DIR/postgresql.conf" <<CONF

# --- added by scripts/lib/pg.sh (throwaway test cluster) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock_dir'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF

    # The port is picked just before use, so another process may grab it first: retry.
    local attempt port=""
    for attempt in 1 2 3; do
        port="$(free_port)"
        if (cd "$PG_BASE_DIR" && _pg_ctl -l "$PG_LOG_FILE" -o "-p $port" -w \
            -t "${PG_START_TIMEOUT:-60}" start >/dev/null); then
            break
        fi
        warn "PostgreSQL did not start on port $port (attempt $attempt); server log:"
        tail -n 20 "$PG_LOG_FILE" >&2 || true
        port=""
    done
    if [[ -z "$port" ]]; then
        warn "could not start PostgreSQL"
        pg_stop
        return 1
    fi

    export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
    # pg_ctl -w already waited for "ready"; this also proves that TCP on 127.0.0.1 answers.
    local deadline=$((SECONDS + 30))
    until "$PG_BINDIR/pg_isready" -q -h "$PGHOST" -p "$PGPORT" -U "$PGUSER"; do
        if ((SECONDS >= deadline)); then
            warn "PostgreSQL on $PGHOST:$PGPORT is not ready after 30s"
            pg_stop
            return 1
        fi
        sleep 0.2
    done
    log "PostgreSQL ready on $PGHOST:$PGPORT (user $PGUSER, trust auth)"
}

# Stop the cluster and delete its directory. Safe to call twice or with nothing running.
pg_stop() {
    [[ -n "$PG_BASE_DIR" ]] || return 0
    local pid="" deadline
    if [[ -f "$PG_DATA_DIR/postmaster.pid" ]]; then
        pid="$(head -n 1 "$PG_DATA_DIR/postmaster.pid" 2>/dev/null || true)"
        # immediate: no checkpoint to write, the data is about to be deleted anyway.
        if ! (cd "$PG_BASE_DIR" && _pg_ctl -m immediate -w -t 30 stop >/dev/null 2>&1); then
            warn "pg_ctl stop failed; killing postmaster ${pid:-?}"
            if [[ -n "$pid" ]]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        # pg_ctl returns once the pid file is gone, while the server may still be exiting;
        # nothing should outlive this function.
        deadline=$((SECONDS + 10))
        while [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
    fi
    rm -rf "$PG_BASE_DIR"
    log "PostgreSQL stopped, $PG_BASE_DIR removed"
    PG_BASE_DIR="" PG_DATA_DIR="" PG_LOG_FILE=""
    unset PGHOST PGPORT PGUSER PGDATABASE
}
