#!/usr/bin/env bash
#
# Tempest's volume API tests (tempest.api.volume, tempest from PyPI)
# against a sandbox: two RBD backends (multi_backend), Keystone, no Nova,
# Glance or Swift, and the plugin's volume manager on every volume service.
#
# Usage: bash tools/run-tempest.sh [--stock] [--regex R] [--concurrency N]
#
#   --stock   Cinder's stock volume manager instead: the baseline, which
#             the plugin must match test for test.
#
# Installs the system packages first (tools/install-system-deps.sh, needs
# root or sudo) and the tests' virtualenv (tox -e tempest). Exits non-zero
# when a test fails. The last line reads:
#
#   tempest: N passed, N failed, N skipped

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

args=()
if [ "${1:-}" = "--stock" ]; then
    args+=(--volume-manager stock)
    shift
fi

bash tools/install-system-deps.sh

log=$(mktemp "${TMPDIR:-/tmp}/cinder-asyncmig-tempest.XXXXXX")
trap 'rm -f "$log"' EXIT
rc=0
.venv-tools/bin/tox -e tempest -- "${args[@]}" "$@" 2>&1 | tee "$log" ||
    rc=$?
read -r passed failed skipped runs < <(awk -f tools/stestr-totals.awk "$log")
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "run-tempest: tox failed (exit $rc) although no test failed" \
        "($runs run(s) reported totals)"
fi
echo "tempest: $passed passed, $failed failed, $skipped skipped"
exit "$rc"
