# Shared helpers for scripts/start and scripts/test. Source it; do not run it.
# shellcheck shell=bash

FD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FD_VENV="$FD_ROOT/.venv"
FD_PY="$FD_VENV/bin/python"
FD_WEBAPP="$FD_ROOT/frontend/app"
# Where Vite writes the build; django-vite reads manifest.json from here (config/settings.py).
FD_WEBAPP_DIST="$FD_ROOT/frontend/static/frontend/dist"

if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
    FD_BOLD=$'\033[1m' FD_RED=$'\033[31m' FD_YELLOW=$'\033[33m' FD_RESET=$'\033[0m'
else
    FD_BOLD='' FD_RED='' FD_YELLOW='' FD_RESET=''
fi
fd_log() { printf '\n%s==> %s%s\n' "$FD_BOLD" "$*" "$FD_RESET" >&2; }
fd_warn() { printf '%swarning:%s %s\n' "$FD_YELLOW" "$FD_RESET" "$*" >&2; }
fd_die() { printf '%serror:%s %s\n' "$FD_RED" "$FD_RESET" "$*" >&2; exit 1; }

# As root (CI, containers) run directly; otherwise through sudo when there is one.
fd_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

fd_pick_python() {
    if [ -n "${FLOWDECK_PYTHON:-}" ]; then echo "$FLOWDECK_PYTHON"; return; fi
    if command -v python3.11 >/dev/null && python3.11 -c 'import sys' 2>/dev/null; then echo python3.11; return; fi
    if command -v python3 >/dev/null && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        echo python3; return
    fi
    fd_die "Flowdeck needs Python 3.11 (python3.11 on PATH, or set FLOWDECK_PYTHON)."
}

# fd_python_env base|dev: create .venv when missing and install the lock (requirements/base.txt, plus
# requirements/dev.txt and the SDK in editable mode with "dev"). uv makes a no-op install take
# well under a second, so this runs every time.
fd_python_env() {
    local with_dev="${1:-}"
    if [ ! -x "$FD_PY" ]; then
        fd_log "Creating the virtual environment in .venv"
        "$(fd_pick_python)" -m venv "$FD_VENV"
    fi
    if [ ! -x "$FD_VENV/bin/uv" ]; then
        fd_log "Installing uv into .venv"
        "$FD_PY" -m pip install --quiet --disable-pip-version-check uv
    fi
    local reqs=(-r "$FD_ROOT/requirements/base.txt")
    if [ "$with_dev" = dev ]; then reqs+=(-r "$FD_ROOT/requirements/dev.txt"); fi
    fd_log "Installing Python dependencies from the lock (${reqs[*]//$FD_ROOT\//})"
    "$FD_VENV/bin/uv" pip install --python "$FD_PY" --quiet "${reqs[@]}"
    if [ "$with_dev" = dev ]; then
        fd_sdk_install
    fi
}

# fd_sdk_install [PYTHON]: the SDK (agents_sdk, editable) into .venv (or PYTHON's environment), so
# the `flowdeck` command the web app shows (`flowdeck register`, `flowdeck agent start`) is in
# .venv/bin. A no-op in well under a second when it is already there.
fd_sdk_install() {
    local py="${1:-$FD_PY}"
    "$FD_VENV/bin/uv" pip install --python "$py" --quiet -e "$FD_ROOT/agents_sdk"
}

fd_has_webapp() { [ -f "$FD_WEBAPP/package.json" ]; }

# A hash of the web app's sources (everything under frontend/app except node_modules).
fd_webapp_source_hash() {
    (cd "$FD_WEBAPP" && find . -path ./node_modules -prune -o -type f -print0 | LC_ALL=C sort -z \
        | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

# fd_webapp_install: `npm ci`, skipped when node_modules was installed from the same lock.
fd_webapp_install() {
    command -v npm >/dev/null || fd_die "npm is needed to build the web app (Node.js 20+)."
    local stamp="$FD_WEBAPP/node_modules/.flowdeck-lock.sha256" want
    want="$(cat "$FD_WEBAPP/package.json" "$FD_WEBAPP/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1)"
    if [ -z "${FLOWDECK_FORCE_WEB_BUILD:-}" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "node_modules is up to date with package-lock.json" >&2
        return 0
    fi
    if [ -f "$FD_WEBAPP/package-lock.json" ]; then
        fd_log "npm ci (frontend/app)"
        npm --prefix "$FD_WEBAPP" ci --no-audit --no-fund || return 1
    else
        fd_warn "frontend/app has no package-lock.json; falling back to npm install"
        npm --prefix "$FD_WEBAPP" install --no-audit --no-fund || return 1
    fi
    echo "$want" >"$stamp"
}

# fd_webapp_build: `npm run build`, skipped when the sources match the last build's.
fd_webapp_build() {
    local stamp="$FD_WEBAPP_DIST/.flowdeck-source.sha256" want
    want="$(fd_webapp_source_hash)"
    if [ -z "${FLOWDECK_FORCE_WEB_BUILD:-}" ] && [ -f "$stamp" ] && [ -f "$FD_WEBAPP_DIST/manifest.json" ] \
        && [ "$(cat "$stamp")" = "$want" ]; then
        echo "The web app build is up to date" >&2
        return 0
    fi
    fd_log "npm run build (frontend/app)"
    npm --prefix "$FD_WEBAPP" run build || return 1
    if [ -f "$FD_WEBAPP_DIST/manifest.json" ]; then
        echo "$want" >"$stamp"
    else
        fd_warn "the build wrote no ${FD_WEBAPP_DIST#"$FD_ROOT"/}/manifest.json (check build.outDir and build.manifest in vite.config)"
    fi
}

fd_wait_for() { # fd_wait_for SECONDS DESCRIPTION COMMAND...
    local seconds="$1" what="$2"; shift 2
    local i
    for ((i = 0; i < seconds * 2; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    fd_die "$what did not come up within ${seconds}s"
}

# Start the local PostgreSQL and Redis the test suite talks to when they are not answering.
fd_services() {
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        fd_log "Starting PostgreSQL"
        # shellcheck disable=SC2046
        fd_as_root pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start || true
        fd_wait_for 60 PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
    fi
    if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
        fd_log "Starting Redis"
        fd_as_root mkdir -p /var/lib/redis /var/log/redis
        fd_as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log
        fd_wait_for 30 Redis sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'
    fi
}

# The owner role (migrations, test database creation), the app role (what RLS applies to) and the
# flowdeck database, on the local PostgreSQL (trust auth for the postgres superuser on 127.0.0.1).
fd_db_roles() {
    local psql=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt)
    "${psql[@]}" -c "DO \$\$BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='flowdeck_owner') THEN
            CREATE ROLE flowdeck_owner LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS; END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='flowdeck_app') THEN
            CREATE ROLE flowdeck_app LOGIN NOSUPERUSER NOBYPASSRLS; END IF;
        END\$\$;"
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='flowdeck'")" != 1 ]; then
        "${psql[@]}" -c "CREATE DATABASE flowdeck OWNER flowdeck_owner"
    fi
}
