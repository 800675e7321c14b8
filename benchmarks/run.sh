#!/usr/bin/env bash
# The sync benchmark, one command: per latency, SQLite, then PostgreSQL on a throwaway
# cluster; then the combined Markdown table (paste it into the README).
#
#   bash benchmarks/run.sh                          # 100,000 customers at 0 and 250 ms
#   bash benchmarks/run.sh --quick                  # 10,000 customers: a smoke run
#   bash benchmarks/run.sh --customers 5000 --latency-ms 0,250 --windows 8
#   bash benchmarks/run.sh --no-entities --no-skew  # customers only, evenly spread in time
#   bash benchmarks/run.sh --profile                # also cProfile the first sync and the
#                                                   # no-change re-sync on SQLite, 20,000
#
# --latency-ms takes one value or several (comma-separated): one run per value. The peak
# memory runs (N/5 and N) happen at the first latency; later ones measure N only.
# Environment: BENCH_DBS (default "sqlite postgres") picks the databases; AUTUMN_VENV the
# virtualenv (default .venv-bench: the package, its test extras and orjson, the fastest
# decoder, for the app and for the lean floors alike); AUTUMN_PYTHON its interpreter
# (default Python 3.13, so Django 6.1, else python3).
# Writes benchmarks/out/: results-<db>-<ms>ms.json, report.md, profile-*.txt (gitignored).
# Every figure is informational: the exit code is 0 whenever the benchmark ran.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
export AUTUMN_VENV="${AUTUMN_VENV:-$REPO_ROOT/.venv-bench}"
# The release's target: Python 3.13 (so Django 6.1), where the machine has it.
if [[ -z "${AUTUMN_PYTHON:-}" ]]; then
    AUTUMN_PYTHON="$(find_python 3.13)" || AUTUMN_PYTHON=python3
    export AUTUMN_PYTHON
fi
source "$REPO_ROOT/scripts/lib/venv.sh"
source "$REPO_ROOT/scripts/lib/pg.sh"

OUT_DIR="$REPO_ROOT/benchmarks/out"
CUSTOMERS=100000
LATENCIES="0,250"
WINDOWS=8
PROFILE=0
PROFILE_CUSTOMERS=20000
EXTRA=()
MEMORY_SIZES=""

usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while (($#)); do
    case "$1" in
        --customers)
            [[ $# -ge 2 ]] || die "--customers needs a number"
            CUSTOMERS="$2"
            shift 2
            ;;
        --quick)
            CUSTOMERS=10000
            shift
            ;;
        --latency-ms)
            [[ $# -ge 2 ]] || die "--latency-ms needs a number of milliseconds, or several: 0,250"
            LATENCIES="$2"
            shift 2
            ;;
        --windows)
            [[ $# -ge 2 ]] || die "--windows needs a number"
            WINDOWS="$2"
            shift 2
            ;;
        --profile)
            PROFILE=1
            shift
            ;;
        --memory-sizes)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            MEMORY_SIZES="$2"
            shift 2
            ;;
        --baseline-sample)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            EXTRA+=("$1" "$2")
            shift 2
            ;;
        --no-entities | --no-skew)
            EXTRA+=("$1")
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ "$CUSTOMERS" =~ ^[0-9]+$ ]] || die "--customers must be a whole number, not '$CUSTOMERS'"
[[ "$WINDOWS" =~ ^[0-9]+$ && "$WINDOWS" -ge 1 ]] || die "--windows must be a whole number >= 1, not '$WINDOWS'"
IFS=',' read -r -a LATENCY_LIST <<<"$LATENCIES"
((${#LATENCY_LIST[@]})) || die "--latency-ms needs at least one value"
for ms in "${LATENCY_LIST[@]}"; do
    [[ "$ms" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--latency-ms takes milliseconds >= 0 (e.g. 0,250), not '$ms'"
done

venv_ensure
# The fastest decoder for the app (its speedups extra) and for the lean floors alike.
if ! "$PY" -c "import orjson" 2>/dev/null; then
    log "installing orjson into $VENV"
    "$PY" -m pip install -qq --disable-pip-version-check --no-input orjson
fi
cd "$REPO_ROOT"
mkdir -p "$OUT_DIR"

RESULTS=()
first=1
for ms in "${LATENCY_LIST[@]}"; do
    if [[ -n "$MEMORY_SIZES" ]]; then
        memory=(--memory-sizes "$MEMORY_SIZES")
    elif ((first)); then
        memory=()  # the default: N/5 and N
    else
        memory=(--memory-sizes "$CUSTOMERS")
    fi
    for db in ${BENCH_DBS:-sqlite postgres}; do
        out="$OUT_DIR/results-$db-${ms}ms.json"
        rm -f "$out" # a failed run must not leave an old result to report
        if [[ "$db" == postgres ]]; then
            pg_start
        fi
        log "benchmark on $db, $CUSTOMERS customers, $ms ms per request, $WINDOWS windows"
        "$PY" -m benchmarks.sync_benchmark --db "$db" --customers "$CUSTOMERS" --latency-ms "$ms" \
            --windows "$WINDOWS" --json-out "$out" "${memory[@]}" "${EXTRA[@]}"
        RESULTS+=("$out")
        if [[ "$db" == postgres ]]; then
            pg_stop
        fi
    done
    first=0
done

if ((PROFILE)); then
    log "profile: first sync and no-change re-sync on SQLite, $PROFILE_CUSTOMERS customers"
    "$PY" -m benchmarks.sync_benchmark --db sqlite --customers "$PROFILE_CUSTOMERS" --profile "${EXTRA[@]}"
fi

log "combined report ($OUT_DIR/report.md)"
echo
"$PY" -m benchmarks.report "${RESULTS[@]}" --out "$OUT_DIR/report.md"
