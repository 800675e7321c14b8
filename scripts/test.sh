#!/usr/bin/env bash
# The test command (CI runs exactly this): lint, build the wheel and the sdist, then run
# the test suite against the package *as installed from the wheel*, in three legs:
#
#   sqlite    Python 3.13, the newest Django (6.1), SQLite
#   postgres  Python 3.13, the newest Django (6.1), a throwaway PostgreSQL 15 cluster
#   django52  Python 3.11, the oldest supported Django (5.2 LTS), SQLite, with
#             django-celery-beat, and static files served by ManifestStaticFilesStorage
#             after collectstatic (as most production sites do)
#
# The sqlite and postgres legs also run the owner tests (ORG_TESTS) under
# tests.settings_org, where customers belong to an organisation model instead of users
# (AUTUMN_CUSTOMER_OWNER_MODEL), recorded as "sqlite-org" and "postgres-org".
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -k sync -x      # extra arguments go to every pytest run
#   TEST_LEGS=sqlite bash scripts/test.sh  # only some legs (default: "sqlite postgres django52")
#
# Each leg has its own virtualenv (.venv-<leg>) with the wheel installed, not editable, and
# runs a copy of tests/ and example_project/ from test-output/<leg>/, where no source tree
# of autumn_django is importable: the suite asserts it imported the installed package.
# Python 3.12/3.13 are looked for on PATH and in pyenv's versions folder.
#
# Output goes to the terminal and to test-output/ (gitignored): ruff.log, dist/,
# pytest-<leg>.log and junit-<leg>.xml. Exits non-zero if any step failed; a pytest run
# that collects no test (exit code 5) counts as a failure.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lib/venv.sh"
source "$REPO_ROOT/scripts/lib/pg.sh"

OUT_DIR="$REPO_ROOT/test-output"
DIST_DIR="$OUT_DIR/dist"
RESULTS=()   # one "name: verdict" line per step, printed at the end
FAILED=0

# leg -> "python-version django-requirement database extras"
declare -A LEG_PYTHON=([sqlite]=3.13 [postgres]=3.13 [django52]=3.11)
declare -A LEG_DJANGO=([sqlite]="Django==6.1.*" [postgres]="Django==6.1.*" [django52]="Django==5.2.*")
declare -A LEG_DB=([sqlite]=sqlite [postgres]=postgres [django52]=sqlite)
declare -A LEG_EXTRAS=([sqlite]="test" [postgres]="test" [django52]="test,test-beat")
declare -A LEG_STATIC=([sqlite]="" [postgres]="" [django52]=manifest)
# Legs that run ORG_TESTS again with customers owned by organisations (tests.settings_org).
declare -A LEG_ORG=([sqlite]=1 [postgres]=1 [django52]="")
ORG_TESTS=(tests/test_owners.py tests/test_adoption.py tests/test_migrations.py tests/test_checks.py)

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
    RESULTS+=("$(printf '%-13s %s' "$name:" "$verdict")")
}

run_ruff() {
    log "ruff check ."
    local rc=0
    # Not through a pipe: `set -e` must not fire, and the exit code must be ruff's own.
    ruff check . >"$OUT_DIR/ruff.log" 2>&1 || rc=$?
    cat "$OUT_DIR/ruff.log"
    record ruff "$rc"
}

# Build the wheel and the sdist the way a release would (isolated build environment).
build_dist() {
    log "building the wheel and the sdist into $DIST_DIR"
    local rc=0
    "$PY" -m build --wheel --sdist --outdir "$DIST_DIR" "$REPO_ROOT" >"$OUT_DIR/build.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        cat "$OUT_DIR/build.log" >&2
        record build "$rc"
        return 1
    fi
    WHEEL="$(ls "$DIST_DIR"/*.whl)"
    SDIST="$(ls "$DIST_DIR"/*.tar.gz)"
    log "built $(basename "$WHEEL") and $(basename "$SDIST")"
    record build 0
}

# The leg's virtualenv with the freshly built wheel installed (never editable). Its
# dependencies are installed again only when the wheel's requirements or the leg change.
leg_venv() {
    local leg="$1" python venv want
    python="$(find_python "${LEG_PYTHON[$leg]}")" || return 1
    venv="$REPO_ROOT/.venv-$leg"
    want="$( { "$python" --version; printf '%s\n' "${LEG_DJANGO[$leg]}" "${LEG_EXTRAS[$leg]}";
              cat "$REPO_ROOT/pyproject.toml"; } | sha256sum | cut -d' ' -f1)"
    if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.autumn-install-stamp" 2>/dev/null)" != "$want" ]]; then
        log "installing the wheel with [${LEG_EXTRAS[$leg]}] and ${LEG_DJANGO[$leg]} into $venv"
        rm -rf "$venv"
        "$python" -m venv "$venv" || return 1
        "$venv/bin/python" -m pip install -qq --disable-pip-version-check --no-input \
            "$WHEEL[${LEG_EXTRAS[$leg]}]" "${LEG_DJANGO[$leg]}" || return 1
        printf '%s\n' "$want" >"$venv/.autumn-install-stamp"
    fi
    # Same version number, new build: replace the package itself every run.
    "$venv/bin/python" -m pip install -qq --disable-pip-version-check --no-input \
        --force-reinstall --no-deps "$WHEEL" || return 1
    LEG_PY="$venv/bin/python"
}

# A copy of what the suite needs besides the package, where the source tree is out of reach.
stage_tests() {
    local dir="$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp -r "$REPO_ROOT/tests" "$REPO_ROOT/example_project" "$REPO_ROOT/pyproject.toml" "$dir/"
    find "$dir" -name __pycache__ -type d -prune -exec rm -rf {} +
}

# Run one leg: its venv, its staged copy, collectstatic if it serves hashed static files,
# then pytest with the script's extra arguments.
run_leg() {
    local leg="$1" rc
    shift
    local dir="$OUT_DIR/$leg"
    if ! leg_venv "$leg"; then
        record "$leg" 1 "FAILED (could not set up its virtualenv)"
        return 0
    fi
    stage_tests "$dir"
    local -a env=(
        AUTUMN_TEST_DB="${LEG_DB[$leg]}"
        AUTUMN_TEST_SQLITE="$OUT_DIR/autumn-test-$leg.sqlite3"
        AUTUMN_TEST_STATIC="${LEG_STATIC[$leg]}"
        AUTUMN_TEST_STATIC_ROOT="$dir/static-root"
        AUTUMN_TEST_INSTALLED=1
        AUTUMN_TEST_WHEEL="$WHEEL"
        AUTUMN_TEST_SDIST="$SDIST"
        AUTUMN_TEST_SOURCE="$REPO_ROOT"
        DJANGO_SETTINGS_MODULE=tests.settings
    )
    if [[ -n "${LEG_STATIC[$leg]}" ]]; then
        log "collectstatic for $leg"
        if ! (cd "$dir" && env "${env[@]}" "$LEG_PY" -m django collectstatic --noinput -v 0); then
            record "$leg" 1 "FAILED (collectstatic)"
            return 0
        fi
    fi
    local color=no
    [[ -t 1 ]] && color=yes
    log "pytest, leg $leg: $("$LEG_PY" -c 'import sys, django; print(f"Python {sys.version.split()[0]}, Django {django.__version__}")'), ${LEG_DB[$leg]}"
    set +e
    (cd "$dir" && env "${env[@]}" "$LEG_PY" -m pytest -p no:cacheprovider --color="$color" \
        --junitxml="$OUT_DIR/junit-$leg.xml" -o junit_suite_name="autumn_django-$leg" \
        "$@") 2>&1 | tee "$OUT_DIR/pytest-$leg.log"
    rc=${PIPESTATUS[0]}
    set -e
    record "$leg" "$rc"
    if [[ -n "${LEG_ORG[$leg]}" ]]; then
        run_org_tests "$leg" "$dir" "${env[@]}" -- "$@"
    fi
}

# The owner tests again, in the leg's venv and staged copy, under tests.settings_org: the
# schema differs (Customer.owner points at orgapp.Organization), so on its own database.
# run_org_tests LEG DIR ENV... -- PYTEST_ARGS...
run_org_tests() {
    local leg="$1" dir="$2" rc color=no
    shift 2
    local -a env=()
    while (($#)) && [[ "$1" != -- ]]; do
        env+=("$1")
        shift
    done
    (($#)) && shift
    env+=(DJANGO_SETTINGS_MODULE=tests.settings_org AUTUMN_TEST_SQLITE="$OUT_DIR/autumn-test-$leg-org.sqlite3")
    [[ -t 1 ]] && color=yes
    log "pytest, leg $leg-org: customers owned by orgapp.Organization (tests.settings_org)"
    set +e
    (cd "$dir" && env "${env[@]}" "$LEG_PY" -m pytest -p no:cacheprovider --color="$color" \
        --junitxml="$OUT_DIR/junit-$leg-org.xml" -o junit_suite_name="autumn_django-$leg-org" \
        "${ORG_TESTS[@]}" "$@") 2>&1 | tee "$OUT_DIR/pytest-$leg-org.log"
    rc=${PIPESTATUS[0]}
    set -e
    record "$leg-org" "$rc"
}

main() {
    local legs="${TEST_LEGS:-sqlite postgres django52}" leg
    cd "$REPO_ROOT"
    venv_ensure
    rm -rf "$OUT_DIR"
    mkdir -p "$OUT_DIR"

    run_ruff

    if build_dist; then
        for leg in $legs; do
            [[ -n "${LEG_DB[$leg]:-}" ]] || die "unknown leg '$leg' in TEST_LEGS (expected sqlite, postgres, django52)"
            if [[ "${LEG_DB[$leg]}" == postgres ]]; then
                # A start failure is a failed run, not a reason to skip the summary.
                if pg_start; then
                    run_leg "$leg" "$@"
                    pg_stop
                else
                    record "$leg" 1 "FAILED (could not start the PostgreSQL cluster)"
                fi
            else
                run_leg "$leg" "$@"
            fi
        done
    fi

    printf '\n==> test summary\n'
    printf '    %s\n' "${RESULTS[@]}"
    if ((FAILED)); then
        printf '==> FAILED\n'
        return 1
    fi
    printf '==> all passed\n'
}

main "$@"
