#!/usr/bin/env bash
#
# Run the project's checks on every Ceph release, one leg per release:
#
#   pacific           pep8, docs, unit, functional, e2e, tempest
#                                                (the host's Ceph 16.2)
#   reef              functional                   (Ceph 18.2, trixie root)
#   tentacle          functional, e2e of the source kinds
#                                                (Ceph 20.2, sid root)
#   reef-on-tentacle  e2e: Cinder with Reef clients, a Tentacle cluster
#                     (what devstack-plugin-ceph deploys)
#
# Usage: bash tools/run-tests.sh [--ceph-release LEG] [TOX ARGS...]
#
# Installs the system packages first (tools/install-system-deps.sh, needs
# root or sudo) and builds or reuses the release roots
# (cinder-asyncmig-roots) while the pacific leg runs. --ceph-release runs
# one leg only; ASYNCMIG_TOX_ENVS runs those tox environments instead of
# the legs. Exits non-zero when anything fails. Prints one line per leg and
# ends with the tests that failed, if any, and one line over all legs:
#
#   failed: LEG TEST_ID
#   tests: N passed, N failed, N skipped
#
# (expected failures count as passed, unexpected successes as failed).
#
# ASYNCMIG_TEST_BUDGET (seconds, default 4800) bounds the whole run: a leg
# still running when it is spent is stopped, its sandboxes and clusters
# taken down, and the legs after it are not run, so that a run that hangs
# still ends with its summary.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

declare -A LEG_ENVS=(
    [pacific]=pep8,docs,py3,functional,e2e,tempest
    [reef]=functional-reef
    [tentacle]=functional-tentacle,e2e-tentacle
    [reef-on-tentacle]=e2e-reef-on-tentacle
)
declare -A LEG_ROOTS=(
    [pacific]=""
    [reef]="reef"
    [tentacle]="tentacle"
    [reef-on-tentacle]="reef tentacle"
)
LEGS=(pacific reef tentacle reef-on-tentacle)

if [ "${1:-}" = "--ceph-release" ]; then
    if [ -z "${2:-}" ] || [ -z "${LEG_ENVS[$2]+set}" ]; then
        echo "run-tests: --ceph-release takes one of: ${LEGS[*]}" >&2
        exit 2
    fi
    LEGS=("$2")
    shift 2
fi
if [ -n "${ASYNCMIG_TOX_ENVS:-}" ]; then
    LEG_ENVS[custom]=$ASYNCMIG_TOX_ENVS
    LEG_ROOTS[custom]=""
    LEGS=(custom)
fi

bash tools/install-system-deps.sh

budget=${ASYNCMIG_TEST_BUDGET:-4800}

# what the tox environments' commands_post do, for a leg that was stopped
take_down() {
    local dir
    for dir in .tox/*/tmp/e2e .tox/*/tmp/tempest; do
        [ -d "$dir" ] && .tox/shared/bin/cinder-asyncmig-sandbox down \
            --under "$dir" || true
    done
    for dir in .tox/*/tmp/functional; do
        [ -d "$dir" ] && .tox/shared/bin/cinder-asyncmig-ceph down \
            --under "$dir" || true
    done
}

# Two test processes per leg: the e2e tests wait on services most of the
# time, and each process has its own clusters and sandboxes.
export ASYNCMIG_TEST_CONCURRENCY=${ASYNCMIG_TEST_CONCURRENCY:-2}

logs=$(mktemp -d "${TMPDIR:-/tmp}/cinder-asyncmig-tests.XXXXXX")
builder=
cleanup() {
    if [ -n "$builder" ]; then
        kill "$builder" 2>/dev/null || true
    fi
    rm -rf "$logs"
}
trap cleanup EXIT

# The roots only need the standard library to build: start them now, on
# the network and the disk while the pacific leg keeps the CPUs busy.
roots=()
for leg in "${LEGS[@]}"; do
    for root in ${LEG_ROOTS[$leg]}; do
        [[ " ${roots[*]} " == *" $root "* ]] || roots+=("$root")
    done
done
if [ ${#roots[@]} -gt 0 ]; then
    PYTHONPATH=$PWD python3 -m cinder_asyncmig.cmd.roots build "${roots[@]}" \
        >"$logs/roots.log" 2>&1 &
    builder=$!
fi

count() {
    awk -f tools/stestr-totals.awk "$1"
}

rc=0
total_passed=0 total_failed=0 total_skipped=0
summary=()
failures=()
for leg in "${LEGS[@]}"; do
    if [ -n "${LEG_ROOTS[$leg]}" ] && [ -n "$builder" ]; then
        echo "run-tests: waiting for the release roots (${roots[*]})"
        if ! wait "$builder"; then
            cat "$logs/roots.log"
        fi
        builder=
        cat "$logs/roots.log"
    fi
    echo
    left=$((budget - SECONDS))
    if [ "$left" -le 60 ]; then
        echo "run-tests: the $leg leg is not run: the run's budget" \
            "(ASYNCMIG_TEST_BUDGET=$budget s) is spent"
        failures+=("failed: $leg (not run: out of time)")
        rc=1
        continue
    fi
    echo "run-tests: $leg leg: tox -e ${LEG_ENVS[$leg]}"
    started=$SECONDS
    leg_rc=0
    # timeout signals its whole process group: tox, stestr and the tests
    timeout --kill-after=30 "$left" \
        .venv-tools/bin/tox -e "${LEG_ENVS[$leg]}" "$@" 2>&1 |
        tee "$logs/$leg.log" || leg_rc=$?
    stopped=
    if [ "$leg_rc" -eq 124 ] || [ "$leg_rc" -eq 137 ]; then
        stopped=yes
        echo "run-tests: the $leg leg was stopped after" \
            "$((SECONDS - started)) s: the run's budget" \
            "(ASYNCMIG_TEST_BUDGET=$budget s) is spent"
        failures+=("failed: $leg (stopped: out of time)")
        take_down
    fi
    read -r passed failed skipped runs < <(count "$logs/$leg.log")
    if [ "$leg_rc" -ne 0 ]; then
        rc=$leg_rc
        if [ "$failed" -eq 0 ] && [ -z "$stopped" ]; then
            echo "run-tests: tox failed (exit $leg_rc) in the $leg leg" \
                "although no test failed ($runs test run(s) reported" \
                "totals); see the FAIL lines above"
        fi
    fi
    # stestr's "{worker} test.id [time] ... FAILED" lines
    while read -r test; do
        failures+=("failed: $leg $test")
    done < <(sed -n 's/^{[0-9]*} \([^ ]*\) .*\.\.\. FAILED$/\1/p' \
        "$logs/$leg.log" | sort -u)
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    total_skipped=$((total_skipped + skipped))
    summary+=("$(printf '%-17s %3d passed %3d failed %3d skipped  %5.1f min  (%s)' \
        "$leg" "$passed" "$failed" "$skipped" \
        "$(awk "BEGIN { print ($SECONDS - $started) / 60 }")" "${LEG_ENVS[$leg]}")")
done

echo
echo "run-tests: legs"
printf '  %s\n' "${summary[@]}"
echo
if [ ${#failures[@]} -gt 0 ]; then
    printf '%s\n' "${failures[@]}"
fi
echo "tests: $total_passed passed, $total_failed failed, $total_skipped skipped"
exit "$rc"
