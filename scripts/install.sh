#!/usr/bin/env bash
# Installs what the platform and its tests need and is missing; idempotent; says what it does.
#   - Debian packages: PostgreSQL, Redis, Mosquitto (+ clients), nginx, jq, curl, Python 3.11 venv support
#     decK (validates gateway/kong.yml), Lua 5.1 with busted and LuaSocket (the Kong plugin's specs), gcc with
#     Mosquitto's and OpenSSL's headers (the broker's certificate plugin)
#   - a Python virtual environment in .venv with the project and its pinned dependencies (constraints.txt)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '==> %s\n' "$*"; }

# --- Debian packages ---------------------------------------------------------------------------------------
declare -A need=(
  [nginx]=nginx-light
  [mosquitto]=mosquitto
  [mosquitto_pub]=mosquitto-clients
  [mosquitto_passwd]=mosquitto
  [redis-server]=redis-server
  [jq]=jq
  [curl]=curl
  [deck]=deck
  [lua5.1]=lua5.1
  [busted]=lua-busted
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${need[$cmd]}")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# The broker's certificate plugin (agents/mqtt/broker_plugin, compiled at start): a C compiler and the headers.
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
[ -f /usr/include/mosquitto_plugin.h ] || missing+=(mosquitto-dev)
[ -f /usr/include/mosquitto.h ] || missing+=(libmosquitto-dev)
[ -f /usr/include/openssl/x509.h ] || missing+=(libssl-dev)
# The Kong plugin's specs against the real PDP (gateway/kong-plugin) speak HTTP through LuaSocket.
lua5.1 -e 'require "socket.http"' >/dev/null 2>&1 || missing+=(lua-socket)
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$(command -v "$candidate"); break
    fi
  done
fi
[ -n "$PYTHON" ] || missing+=(python3.11 python3.11-venv)
if [ -n "$PYTHON" ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3.11-venv); fi

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  step "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  step "system packages present (postgresql, redis, mosquitto (+ plugin headers), gcc, nginx, jq, curl, deck, lua, python 3.11)"
fi
if [ -z "$PYTHON" ]; then PYTHON=$(command -v python3.11); fi

# --- Python environment ------------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  step "creating the virtual environment .venv ($PYTHON)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.ondas-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  step "installing the project and its pinned dependencies into .venv"
  log=.venv/pip-install.log
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' >"$log" 2>&1; then
    tail -30 "$log"; echo "pip install failed (full log: $log)" >&2; exit 1
  fi
  touch "$stamp"
else
  step "Python environment up to date (.venv)"
fi
