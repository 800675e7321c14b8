#!/usr/bin/env bash
# The sync benchmark, one command: SQLite, then PostgreSQL on a throwaway cluster, then the
# combined Markdown table (paste it into the README).
#
#   bash benchmarks/run.sh                    # 100,000 customers (several minutes)
#   bash benchmarks/run.sh --quick            # 10,000 customers: a smoke run
#   bash benchmarks/run.sh --customers 50000  # another N
#   bash benchmarks/run.sh --profile          # also cProfile the first sync and the no-change
#                                             # re-sync on SQLite at 20,000 customers
#
# Environment: BENCH_DBS (default "sqlite postgres") picks the databases.
# Writes benchmarks/out/: results-<db>.json, report.md, profile-*.txt (gitignored).
# Every figure is informational: the exit code is 0 whenever the benchmark ran.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
source "$REPO_ROOT/scripts/lib/venv.sh"
source "$REPO_ROOT/scripts/lib/pg.sh"

OUT_DIR="$REPO_ROOT/benchmarks/out"
CUSTOMERS=100000
PROFILE=0
PROFILE_CUSTOMERS=20000
EXTRA=()

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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
        --profile)
            PROFILE=1
            shift
            ;;
        --baseline-sample | --memory-sizes)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            EXTRA+=("$1" "$2")
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ "$CUSTOMERS" =~ ^[0-9]+$ ]] || die "--customers must be a whole number, not '$CUSTOMERS'"

venv_ensure
cd "$REPO_ROOT"
mkdir -p "$OUT_DIR"

RESULTS=()
for db in ${BENCH_DBS:-sqlite postgres}; do
    rm -f "$OUT_DIR/results-$db.json"  # a failed run must not leave an old result to report
    if [[ "$db" == postgres ]]; then
        pg_start
    fi
    log "benchmark on $db, $CUSTOMERS customers"
    "$PY" -m benchmarks.sync_benchmark --db "$db" --customers "$CUSTOMERS" \
        --json-out "$OUT_DIR/results-$db.json" "${EXTRA[@]}"
    RESULTS+=("$OUT_DIR/results-$db.json")
    if [[ "$db" == postgres ]]; then
        pg_stop
    fi
done

if ((PROFILE)); then
    log "profile: first sync and no-change re-sync on SQLite, $PROFILE_CUSTOMERS customers"
    "$PY" -m benchmarks.sync_benchmark --db sqlite --customers "$PROFILE_CUSTOMERS" --profile
fi

log "combined report ($OUT_DIR/report.md)"
echo
"$PY" -m benchmarks.report "${RESULTS[@]}" --out "$OUT_DIR/report.md"
