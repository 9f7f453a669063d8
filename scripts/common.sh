# Shared by scripts/run and scripts/test (sourced, not executed).
# ensure_venv EXTRAS: a virtualenv in .venv with siprouter installed editable (with EXTRAS, e.g.
# "test", or "" for none). Quick when nothing changed: a stamp records what was installed
# against which pyproject.toml.
# With a C compiler at hand the hot-path modules listed in setup.py are compiled with mypyc
# (extension modules next to their sources, git-ignored); the stamp then also holds a hash of
# those sources, so editing one rebuilds. A failed build falls back to pure Python with a
# message; SIPROUTER_MYPYC=0 in the environment asks for pure Python.

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

# the modules setup.py compiles, as paths from $ROOT
mypyc_modules() { grep -o '"src/siprouter/[A-Za-z0-9_/]*\.py"' "$ROOT/setup.py" | tr -d '"'; }

# remove compiled modules, which would shadow their .py sources in a pure Python install
drop_compiled() {
    find "$ROOT/src" \( -name '*.cpython-*.so' -o -name '*__mypyc.*.so' \) -delete 2>/dev/null || true
}

# pure or mypyc:<hash of setup.py and the compiled sources>
wanted_build() {
    if [ "${SIPROUTER_MYPYC:-}" = 0 ] || [ ! -f "$ROOT/setup.py" ] \
        || ! { command -v cc || command -v gcc; } >/dev/null 2>&1; then
        echo pure
        return
    fi
    echo "mypyc:$(cd "$ROOT" && cat setup.py $(mypyc_modules) src/siprouter/scripting/_luart.c src/siprouter/sip/_scan.c \
        | sha256sum | cut -d' ' -f1)"
}

# Lua 5.4's headers for the _luart binding (setup.py); installed when missing. Says whether
# they are there.
have_lua_headers() {
    [ -f /usr/include/lua5.4/lua.h ] && return 0
    say "installing liblua5.4-dev (Lua headers for the _luart binding)"
    apt_install liblua5.4-dev pkg-config >/dev/null 2>&1 || true
    [ -f /usr/include/lua5.4/lua.h ]
}

ensure_venv() {
    local extras="$1" spec="." stamp hash s build pip
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
    # One stamp per extras set, holding the pyproject.toml hash it was installed from and the
    # build (pure, or mypyc with its sources' hash); any stamp satisfies a plain install
    # (extras only add to it).
    build="$(wanted_build)"
    hash="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $build"
    stamp="$VENV/.siprouter-installed-${extras:-base}"
    for s in "$stamp" $([ -z "$extras" ] && echo "$VENV"/.siprouter-installed-*); do
        if [ -f "$s" ] && [ "$(cat "$s")" = "$hash" ] \
            && "$VENV/bin/python" -c 'import siprouter, uvloop' >/dev/null 2>&1; then
            return 0
        fi
    done
    pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
    drop_compiled
    if [ "$build" != pure ]; then
        local luart=0
        have_lua_headers && luart=1
        say "installing siprouter${extras:+ with [$extras]} into $VENV, hot path compiled with mypyc$(
            [ "$luart" = 1 ] && echo ", with the Lua binding _luart")"
        # with the Lua binding when its headers are there; if that build fails, once more
        # without it (Lua scripts then run on lupa) before falling back to pure Python
        for try_luart in $([ "$luart" = 1 ] && echo 1) 0; do
            if (cd "$ROOT" && "${pip[@]}" 'setuptools>=68' wheel 'mypy>=1.10' \
                && SIPROUTER_MYPYC=1 SIPROUTER_LUART="$try_luart" "${pip[@]}" \
                    --no-build-isolation -e "$spec") \
                >"$VENV/mypyc-build.log" 2>&1 \
                && "$VENV/bin/python" -c 'import siprouter.proxy.core' >/dev/null 2>&1; then
                echo "$hash" >"$stamp"
                return 0
            fi
            [ "$try_luart" = 1 ] && say "the build with the Lua binding failed (see" \
                "$VENV/mypyc-build.log): building without it"
            drop_compiled
        done
        say "the mypyc build failed (see $VENV/mypyc-build.log): installing pure Python"
        drop_compiled
    else
        say "installing siprouter${extras:+ with [$extras]} into $VENV"
    fi
    (cd "$ROOT" && "${pip[@]}" -e "$spec")
    "$VENV/bin/python" -c 'import siprouter, uvloop'
    echo "$hash" >"$stamp"
}
