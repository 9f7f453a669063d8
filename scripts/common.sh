# Shared by scripts/run and scripts/test (sourced, not executed).
# ensure_venv EXTRAS: a virtualenv in .venv with siprouter installed editable (with EXTRAS, e.g.
# "test", or "" for none). Quick when nothing changed: a stamp records what was installed
# against which pyproject.toml.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        say "need root to run: $*"; return 1
    fi
}

APT_UPDATED=""
apt_install() {
    command -v apt-get >/dev/null 2>&1 || { say "apt-get not found; install by hand: $*"; return 1; }
    if [ -z "$APT_UPDATED" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

ensure_venv() {
    local extras="$1" spec="." stamp hash s
    [ -n "$extras" ] && spec=".[$extras]"
    if ! command -v python3 >/dev/null 2>&1; then
        say "installing python3"
        apt_install python3 python3-venv
    fi
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        say "creating $VENV"
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            # Debian ships venv's ensurepip separately
            rm -rf "$VENV"
            apt_install python3-venv
            python3 -m venv "$VENV"
        fi
    fi
    # One stamp per extras set, holding the pyproject.toml hash it was installed from; any
    # stamp satisfies a plain install (extras only add to it).
    hash="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    stamp="$VENV/.siprouter-installed-${extras:-base}"
    for s in "$stamp" $([ -z "$extras" ] && echo "$VENV"/.siprouter-installed-*); do
        if [ -f "$s" ] && [ "$(cat "$s")" = "$hash" ] \
            && "$VENV/bin/python" -c 'import siprouter, uvloop' >/dev/null 2>&1; then
            return 0
        fi
    done
    say "installing siprouter${extras:+ with [$extras]} into $VENV"
    (cd "$ROOT" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec")
    "$VENV/bin/python" -c 'import siprouter, uvloop'
    echo "$hash" >"$stamp"
}
