#!/usr/bin/env bash
# The demo: a local Autumn stand-in with 3000 customers, mirrored into the example project
# by `manage.py autumn_sync`, browsable in the Django admin. The example project bills
# organisations (AUTUMN_CUSTOMER_OWNER_MODEL = "accounts.Organization"): the demo creates
# three, each becoming an Autumn customer as it is created, shown linked in the admin.
#
#   bash scripts/demo.sh           # ... then serve the admin until Ctrl-C
#   bash scripts/demo.sh --smoke   # ... then check that /admin/login/ answers, and stop (CI)
#
# Environment: DEMO_PORT (admin server; default 8000, or a free port with --smoke),
# DEMO_CUSTOMERS (default 3000). Sets up .venv on first use. Each run starts from a fresh
# database (.run/demo.sqlite3); logs are in .run/.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lib/venv.sh"

STANDIN_DEFAULT_PORT=8787
STANDIN_PID=""
SERVER_PID=""
MANAGE=("example_project/manage.py")

usage() { sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

manage() { "$PY" "${MANAGE[@]}" "$@"; }

stop_standin() {
    if [[ -n "$STANDIN_PID" ]]; then
        stop_pid "$STANDIN_PID"
        log "stand-in stopped"
        STANDIN_PID=""
    fi
}

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        stop_pid "$SERVER_PID"
        log "admin server stopped"
        SERVER_PID=""
    fi
}

# Start the stand-in in the background and export AUTUMN_API_URL once it listens.
start_standin() {
    local port="$STANDIN_DEFAULT_PORT" log_file="$RUN_DIR/standin.log"
    # 8787 when free, so the URL is the same every time; else let the stand-in pick (port 0)
    # and read the URL from its "listening" line.
    port_is_free "$port" || port=0
    log "starting the Autumn stand-in (${DEMO_CUSTOMERS:-3000} customers with their entities; log: $log_file)"
    "$PY" -m autumn_django.testing serve --customers "${DEMO_CUSTOMERS:-3000}" --seed 1 --entities \
        --port "$port" >"$log_file" 2>&1 &
    STANDIN_PID=$!
    at_exit stop_standin
}

wait_for_standin() {
    local log_file="$RUN_DIR/standin.log" deadline=$((SECONDS + 120)) url=""
    while ((SECONDS < deadline)); do
        url="$(sed -n 's|^Autumn stand-in listening on \(http://[^ ]*\).*|\1|p' "$log_file")"
        [[ -n "$url" ]] && break
        if ! kill -0 "$STANDIN_PID" 2>/dev/null; then
            cat "$log_file" >&2
            die "the stand-in exited before it listened"
        fi
        sleep 0.2
    done
    if [[ -z "$url" ]]; then
        cat "$log_file" >&2
        die "the stand-in did not print its 'listening' line within 120s"
    fi
    export AUTUMN_API_URL="$url"
    log "stand-in listening on $AUTUMN_API_URL"
}

print_box() {
    local lines=("$@") line width=0
    for line in "${lines[@]}"; do
        if ((${#line} > width)); then width=${#line}; fi
    done
    local rule
    rule="$(printf '%*s' $((width + 4)) '' | tr ' ' '=')"
    printf '\n%s\n' "$rule"
    for line in "${lines[@]}"; do
        printf '| %-*s |\n' "$width" "$line"
    done
    printf '%s\n\n' "$rule"
}

# The checks CI relies on: the admin login page renders, and the demo credentials work.
smoke_check() {
    local base="$1" user="$2" password="$3" tmp="$RUN_DIR/smoke" code token
    rm -rf "$tmp"
    mkdir -p "$tmp"

    code="$(curl -sS -o "$tmp/login.html" -c "$tmp/cookies" -w '%{http_code}' \
        --max-time 30 "$base/admin/login/")"
    if [[ "$code" != 200 ]] || ! grep -q 'name="username"' "$tmp/login.html"; then
        die "smoke: GET /admin/login/ answered HTTP $code, not the login form"
    fi
    log "smoke: GET /admin/login/ -> HTTP 200 with the login form"

    # Django's CSRF check wants the cookie's token echoed in the form.
    token="$(awk '$6 == "csrftoken" { print $7 }' "$tmp/cookies")"
    code="$(curl -sS -o /dev/null -b "$tmp/cookies" -w '%{http_code} %{redirect_url}' \
        --max-time 30 --data-urlencode "csrfmiddlewaretoken=$token" \
        --data-urlencode "username=$user" --data-urlencode "password=$password" \
        --data-urlencode "next=/admin/" "$base/admin/login/")"
    # A successful login redirects to `next`; a failed one re-renders the form (200).
    if [[ "$code" != "302 $base/admin/" ]]; then
        die "smoke: logging in as $user answered '$code', expected a redirect to /admin/"
    fi
    log "smoke: login as $user -> redirect to /admin/"
}

main() {
    local smoke=0 arg
    for arg in "$@"; do
        case "$arg" in
            --smoke) smoke=1 ;;
            -h | --help) usage; return 0 ;;
            *) usage >&2; die "unknown argument: $arg" ;;
        esac
    done

    cd "$REPO_ROOT"
    command -v curl >/dev/null || die "curl is required (apt-get install curl)"
    venv_ensure
    mkdir -p "$RUN_DIR"

    local port="${DEMO_PORT:-}"
    if [[ -z "$port" ]]; then
        # CI and a second copy of the demo must not fight over 8000.
        if ((smoke)); then port="$(free_port)"; else port=8000; fi
    fi
    port_is_free "$port" || die "port $port is in use; set DEMO_PORT to another port"

    # The example project reads these; export them so every manage.py call agrees.
    export DJANGO_SETTINGS_MODULE=example_project.settings
    export EXAMPLE_DB_PATH="$RUN_DIR/demo.sqlite3"
    # The demo runs no Celery worker: signups and admin refreshes run in-process.
    export AUTUMN_TASK_MODE=inline
    export AUTUMN_SECRET_KEY
    AUTUMN_SECRET_KEY="am_sk_test_demo_$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
    rm -f "$EXAMPLE_DB_PATH" "$EXAMPLE_DB_PATH"-{journal,wal,shm}

    # The stand-in generates its customers while migrate runs.
    start_standin
    log "migrating a fresh database ($EXAMPLE_DB_PATH)"
    manage migrate --noinput
    wait_for_standin

    local user=admin password
    password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')"
    # --noinput takes the password from the environment; it is set for this command only.
    DJANGO_SUPERUSER_PASSWORD="$password" manage createsuperuser --noinput \
        --username "$user" --email "$user@example.com"

    # Organisations are the example project's Autumn customers: each one created here calls
    # customers.get_or_create at the stand-in (inline: no worker) and is linked in the mirror.
    log "creating the demo organisations (admin is a member of each)"
    manage create_demo_organizations --member "$user"

    log "manage.py autumn_sync"
    manage autumn_sync
    local linked
    # The last line: Django 5.2+ prints how many objects it imported first.
    linked="$(manage shell -c 'from autumn_django.models import Customer
print(Customer.objects.exclude(owner=None).count())' | tail -n 1)"
    ((linked >= 3)) || die "expected the 3 demo organisations linked to their customers, found $linked"
    log "$linked organisations linked to their Autumn customers (the customer list's owner column)"
    (umask 077 && printf 'url=http://127.0.0.1:%s/admin/\nusername=%s\npassword=%s\n' \
        "$port" "$user" "$password" >"$RUN_DIR/demo-credentials.txt")

    local base="http://127.0.0.1:$port" server_log="$RUN_DIR/runserver.log"
    log "starting the admin on $base (log: $server_log)"
    # In the background so the box prints once the server answers; --noreload keeps it one
    # process, so stopping it leaves nothing behind.
    # Not through `manage`: $! must be python's own pid, not that of a subshell running it.
    "$PY" "${MANAGE[@]}" runserver --noreload "127.0.0.1:$port" >"$server_log" 2>&1 &
    SERVER_PID=$!
    at_exit stop_server
    if ! wait_for_http "$base/admin/login/" 60 "$SERVER_PID"; then
        cat "$server_log" >&2
        die "the admin server did not answer on $base within 60s"
    fi

    print_box "Autumn demo: the Django admin is up" \
        "" \
        "URL:      $base/admin/" \
        "Login:    $user" \
        "Password: $password" \
        "" \
        "Synced from the stand-in at $AUTUMN_API_URL" \
        "Organisations: $base/admin/accounts/organization/" \
        "(also saved in .run/demo-credentials.txt)"

    if ((smoke)); then
        smoke_check "$base" "$user" "$password"
        log "smoke test passed; stopping"
        return 0
    fi

    log "serving; press Ctrl-C to stop (admin server log: $server_log)"
    local rc=0
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=""
    die "the admin server exited by itself (exit code $rc); see $server_log"
}

main "$@"
