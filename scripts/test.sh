#!/usr/bin/env bash
# The test command (CI runs exactly this): lint, then the test suite on SQLite and on a
# throwaway PostgreSQL cluster.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -k sync -x      # extra arguments go to both pytest runs
#   TEST_DBS=sqlite bash scripts/test.sh # only some legs (default: "sqlite postgres django42")
#
# The django42 leg runs the SQLite suite once more on Django 4.2, the oldest supported
# release, in its own virtualenv (.venv-django42).
#
# Sets up .venv on first use. Output goes to the terminal and to test-output/ (gitignored):
# ruff.log, pytest-<db>.log and junit-<db>.xml. Exits non-zero if any step failed; a pytest
# run that collects no test (exit code 5) counts as a failure.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lib/venv.sh"
source "$REPO_ROOT/scripts/lib/pg.sh"

OUT_DIR="$REPO_ROOT/test-output"
RESULTS=()   # one "name: verdict" line per step, printed at the end
FAILED=0

# record NAME EXIT_CODE [VERDICT]
record() {
    local name="$1" rc="$2" verdict="${3:-}"
    if [[ -z "$verdict" ]]; then
        case "$rc" in
            0) verdict="PASSED" ;;
            5) verdict="FAILED (pytest collected no tests, exit code 5)" ;;
            *) verdict="FAILED (exit code $rc)" ;;
        esac
    fi
    [[ "$rc" == 0 ]] || FAILED=1
    RESULTS+=("$(printf '%-9s %s' "$name:" "$verdict")")
}

run_ruff() {
    log "ruff check ."
    local rc=0
    # Not through a pipe: `set -e` must not fire, and the exit code must be ruff's own.
    ruff check . >"$OUT_DIR/ruff.log" 2>&1 || rc=$?
    cat "$OUT_DIR/ruff.log"
    record ruff "$rc"
}

# Run pytest with AUTUMN_TEST_DB=$1 and the script's extra arguments.
run_pytest() {
    local db="$1" rc
    shift
    local color=no
    [[ -t 1 ]] && color=yes
    log "pytest on $db"
    set +e
    local sqlite_or_pg="$db"
    [[ "$db" == django42 ]] && sqlite_or_pg=sqlite
    AUTUMN_TEST_DB="$sqlite_or_pg" "$PY" -m pytest --color="$color" \
        --junitxml="$OUT_DIR/junit-$db.xml" -o junit_suite_name="autumn_django-$db" \
        "$@" 2>&1 | tee "$OUT_DIR/pytest-$db.log"
    rc=${PIPESTATUS[0]}
    set -e
    record "$db" "$rc"
}

# The oldest supported Django, in a venv of its own so the main one stays on the newest.
run_django42() {
    local venv="$REPO_ROOT/.venv-django42"
    local stamp="$venv/.autumn-install-stamp" want
    want="$(sha256sum <"$REPO_ROOT/pyproject.toml" | cut -d" " -f1)"
    if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
        log "installing autumn_django[test] with Django 4.2 into $venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -qq --disable-pip-version-check --no-input \
            -e ".[test]" "Django>=4.2,<4.3"
        printf '%s\n' "$want" >"$stamp"
    fi
    export AUTUMN_TEST_SQLITE="$OUT_DIR/autumn-test-django42.sqlite3"
    PY="$venv/bin/python" run_pytest django42 "$@"
}

main() {
    local dbs="${TEST_DBS:-sqlite postgres django42}" db
    cd "$REPO_ROOT"
    venv_ensure
    rm -rf "$OUT_DIR"
    mkdir -p "$OUT_DIR"

    run_ruff

    for db in $dbs; do
        case "$db" in
            sqlite)
                # tests.settings puts the SQLite file in the working directory by default;
                # keep it with the other test output instead.
                export AUTUMN_TEST_SQLITE="$OUT_DIR/autumn-test.sqlite3"
                run_pytest sqlite "$@"
                ;;
            postgres)
                # A start failure is a failed run, not a reason to skip the summary.
                if pg_start; then
                    run_pytest postgres "$@"
                    pg_stop
                else
                    record postgres 1 "FAILED (could not start the PostgreSQL cluster)"
                fi
                ;;
            django42) run_django42 "$@" ;;
            *) die "unknown leg '$db' in TEST_DBS (expected sqlite, postgres, django42)" ;;
        esac
    done

    printf '\n==> test summary\n'
    printf '    %s\n' "${RESULTS[@]}"
    if ((FAILED)); then
        printf '==> FAILED\n'
        return 1
    fi
    printf '==> all passed\n'
}

main "$@"
