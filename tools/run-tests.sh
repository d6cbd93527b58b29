#!/usr/bin/env bash
#
# Run the project's checks: flake8/hacking (pep8), the unit tests (py3) and
# the functional tests against a throwaway Ceph cluster (functional).
#
# Installs the system packages first (tools/install-system-deps.sh, needs
# root or sudo). Arguments are passed to tox; ASYNCMIG_TOX_ENVS overrides the
# environment list. Exits non-zero when anything fails and ends with one line:
#
#   tests: N passed, N failed, N skipped
#
# summed over the stestr runs of this invocation (expected failures count as
# passed, unexpected successes as failed).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/install-system-deps.sh

TOX_ENVS=${ASYNCMIG_TOX_ENVS:-pep8,py3,functional,e2e}

log=$(mktemp "${TMPDIR:-/tmp}/cinder-asyncmig-tests.XXXXXX")
trap 'rm -f "$log"' EXIT

rc=0
.venv-tools/bin/tox -e "$TOX_ENVS" "$@" 2>&1 | tee "$log" || rc=$?

# Each "stestr run" ends with a block like:
#   ======
#   Totals
#   ======
#   Ran: 12 tests in 3.2 sec.
#    - Passed: 11
#    - Skipped: 1
#    - Expected Fail: 0
#    - Unexpected Success: 0
#    - Failed: 0
#   Sum of execute time for each test: ...
# Counting from this run's output, rather than "stestr last", never reports
# an older run when a later one did not start.
read -r passed failed skipped runs < <(awk '
    /^Totals$/ { totals = 1; runs++; next }
    /^Sum of execute time/ { totals = 0 }
    totals && /^ - Passed: [0-9]+$/ { passed += $3 }
    totals && /^ - Expected Fail: [0-9]+$/ { passed += $4 }
    totals && /^ - Skipped: [0-9]+$/ { skipped += $3 }
    totals && /^ - Failed: [0-9]+$/ { failed += $3 }
    totals && /^ - Unexpected Success: [0-9]+$/ { failed += $4 }
    END { printf "%d %d %d %d\n", passed, failed, skipped, runs }
' "$log")

if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "run-tests: tox failed (exit $rc) although no test failed" \
        "($runs test run(s) reported totals); see the FAIL lines above"
fi
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$rc"
