#!/usr/bin/env bash
#
# Install the distribution packages listed in bindep.txt.
#
# Idempotent; meant to run as root on Debian bookworm (sudo is used when run
# as another user).  bindep and tox live in a small virtualenv, .venv-tools/
# at the top of the repository, so nothing is pip-installed into the system
# Python (PEP 668).  Works when python3 is Debian's /usr/bin/python3 and when
# it is a pyenv build.
#
# Environment:
#   PYTHON             interpreter for .venv-tools (default: python3)
#   ASYNCMIG_TOOLS_VENV  where to put the tools virtualenv
#                        (default: <repo>/.venv-tools)

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

PYTHON=${PYTHON:-python3}
TOOLS_VENV=${ASYNCMIG_TOOLS_VENV:-$REPO_ROOT/.venv-tools}
TOOLS_PIP_REQS=("bindep>=2.11.0" "tox>=4.4.0")

export DEBIAN_FRONTEND=noninteractive

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

APT_UPDATED=0

apt_install() {
    # Refresh the package lists at most once per run, and only when
    # something actually has to be installed.
    if [ "$APT_UPDATED" -eq 0 ]; then
        echo "install-system-deps: apt-get update"
        "${SUDO[@]}" apt-get update -q
        APT_UPDATED=1
    fi
    echo "install-system-deps: apt-get install $*"
    "${SUDO[@]}" apt-get install -y -q "$@"
}

tools_venv_ok() {
    [ -x "$TOOLS_VENV/bin/python" ] &&
        "$TOOLS_VENV/bin/python" -c 'import bindep, tox' >/dev/null 2>&1 &&
        [ -x "$TOOLS_VENV/bin/bindep" ] &&
        [ -x "$TOOLS_VENV/bin/tox" ]
}

make_tools_venv() {
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        apt_install python3
    fi
    rm -rf "$TOOLS_VENV"
    if ! "$PYTHON" -m venv "$TOOLS_VENV" >/dev/null 2>&1; then
        # Debian's python3 ships venv/ensurepip separately.
        rm -rf "$TOOLS_VENV"
        apt_install python3-venv python3-pip
        "$PYTHON" -m venv "$TOOLS_VENV"
    fi
    "$TOOLS_VENV/bin/python" -m pip install -q --upgrade pip
    "$TOOLS_VENV/bin/python" -m pip install -q "${TOOLS_PIP_REQS[@]}"
}

if tools_venv_ok; then
    echo "install-system-deps: reusing $TOOLS_VENV"
else
    echo "install-system-deps: creating $TOOLS_VENV with $PYTHON"
    make_tools_venv
fi

if [ ! -f "$REPO_ROOT/bindep.txt" ]; then
    echo "install-system-deps: $REPO_ROOT/bindep.txt not found" >&2
    exit 1
fi

missing_packages() {
    # bindep exits 1 when something is missing; only its output matters.
    local out rc=0
    out=$("$TOOLS_VENV/bin/bindep" -b --file "$REPO_ROOT/bindep.txt" host) ||
        rc=$?
    if [ "$rc" -gt 1 ]; then
        echo "install-system-deps: bindep failed (exit $rc)" >&2
        return "$rc"
    fi
    echo "$out"
}

missing=$(missing_packages)
if [ -n "$missing" ]; then
    # Word splitting is wanted: one package name per line.
    # shellcheck disable=SC2086
    apt_install $missing
    missing=$(missing_packages)
    if [ -n "$missing" ]; then
        echo "install-system-deps: still missing after install:" $missing >&2
        exit 1
    fi
fi

echo "install-system-deps: all packages in bindep.txt are installed"
