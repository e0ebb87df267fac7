#!/usr/bin/env bash
# What `make` needs before it builds the virtualenv, each missing piece said in one line and,
# when run as root on Debian, installed: venv, a C compiler and the Python headers (gmalglib
# is built from source), and the openssl binary (the PKI tests compare with it).
set -euo pipefail
PY=${1:-python3}
missing=() packages=()
command -v "$PY" >/dev/null || { echo "check: $PY not found: install Python 3.11+" >&2; exit 1; }
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "check: $PY is $("$PY" -V 2>&1); anfu needs Python 3.11 or newer" >&2; exit 1; }
"$PY" -c 'import venv, ensurepip' 2>/dev/null || { missing+=("python venv/ensurepip"); packages+=(python3-venv); }
command -v cc >/dev/null || { missing+=("a C compiler"); packages+=(gcc); }
inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$inc/Python.h" ] || { missing+=("Python headers ($inc/Python.h)"); packages+=(python3-dev); }
command -v openssl >/dev/null || { missing+=("the openssl binary"); packages+=(openssl); }
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "check: installing ${packages[*]} for: ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
else
  echo "check: missing ${missing[*]}: install the Debian packages ${packages[*]}" >&2; exit 1
fi
