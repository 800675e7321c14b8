# shellcheck shell=bash
# Create/refresh the dev virtualenv and put it first on PATH. Shared by test.sh and demo.sh.
#
#   source scripts/lib/common.sh; source scripts/lib/venv.sh; venv_ensure
#
# After venv_ensure: $VENV is the venv, $PY its python, and PATH/VIRTUAL_ENV point at it.
# Set AUTUMN_VENV to use another venv directory, AUTUMN_PYTHON another interpreter than
# python3; AUTUMN_FORCE_INSTALL=1 reinstalls.

if [[ -n "${_AUTUMN_VENV_SH:-}" ]]; then
    return 0
fi
_AUTUMN_VENV_SH=1

VENV="${AUTUMN_VENV:-$REPO_ROOT/.venv}"
PY="$VENV/bin/python"
# Kept inside the venv so that deleting the venv also forgets the install.
_VENV_STAMP="$VENV/.autumn-install-stamp"
# What a fresh clone needs: the package, editable, with its test extras.
_VENV_REQUIREMENT=".[test]"

# What the install depends on: pyproject.toml (dependencies) and the interpreter version.
# If either changes, the stamp no longer matches and we reinstall.
_venv_fingerprint() {
    local py_version
    py_version="$("$PY" -c 'import sys; print(sys.version)')"
    {
        printf '%s\n' "$_VENV_REQUIREMENT" "$py_version"
        cat "$REPO_ROOT/pyproject.toml"
    } | sha256sum | cut -d' ' -f1
}

venv_ensure() {
    local python="${AUTUMN_PYTHON:-python3}"
    command -v "$python" >/dev/null || die "$python is not installed"
    # A venv made by another interpreter (say, before AUTUMN_PYTHON was set) is made again.
    if [[ -x "$PY" && "$("$PY" -c 'import sys; print(sys.version)')" \
        != "$("$python" -c 'import sys; print(sys.version)')" ]]; then
        log "$VENV was made by another Python: making it again"
        rm -rf "$VENV"
    fi
    if [[ ! -x "$PY" ]]; then
        log "creating virtualenv $VENV ($("$python" --version))"
        "$python" -m venv "$VENV"
    fi

    local want have=""
    want="$(_venv_fingerprint)"
    [[ -f "$_VENV_STAMP" ]] && have="$(<"$_VENV_STAMP")"
    # The stamp alone could lie if someone uninstalled things by hand; the console scripts
    # the test run needs are a cheap extra check.
    if [[ "${AUTUMN_FORCE_INSTALL:-0}" != 1 && "$want" == "$have" \
        && -x "$VENV/bin/pytest" && -x "$VENV/bin/ruff" ]]; then
        log "virtualenv up to date ($VENV)"
    else
        log "installing autumn_django[test] into $VENV (pip, quiet)"
        rm -f "$_VENV_STAMP"
        # -qq: errors only; the build backend's deprecation warnings are noise here.
        (cd "$REPO_ROOT" && "$PY" -m pip install -qq --disable-pip-version-check \
            --no-input -e "$_VENV_REQUIREMENT")
        # Written only after pip succeeded, so a failed install is retried next time.
        printf '%s\n' "$want" >"$_VENV_STAMP"
    fi

    export VIRTUAL_ENV="$VENV"
    export PATH="$VENV/bin:$PATH"
    # Child processes (stand-in, manage.py) print as they go, not when their buffer fills.
    export PYTHONUNBUFFERED=1
}
