#!/usr/bin/env bash
#
# Run the benchmarks in bench/, side by side with their anchors:
#
#   anchors         bench/run.py: time to a readable destination, background
#                   copy and resume against stock Cinder and raw librbd
#   cinder-migrate  bench/cinder_migrate.py: through real Cinder services
#   sources         bench/sources.py: source kinds, exporter cap, fio
#   releases        bench/releases.py: source kinds on every Ceph release
#   scale           bench/scale.py: 50 volumes migrated at once, on disk
#   io-during-copy  bench/io_during_copy.py: IO while the copy runs, by cap
#   failover        bench/failover.py: a clustered target's member killed
#
# Usage: bash tools/run-bench.sh [NAME...]    (no NAME: every bench)
#
# Installs the system packages first (tools/install-system-deps.sh, needs
# root or sudo) and the benchmarks' virtualenv (tox -e bench). Each bench
# prints its tables; io-during-copy ends with its one summary line.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/install-system-deps.sh
.venv-tools/bin/tox -e bench --notest >/dev/null
# --notest skips the environment's commands_pre, which link the bindings
.tox/shared/bin/python tools/link_ceph_bindings.py \
    "$(.tox/shared/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null
exec .tox/shared/bin/python bench/suite.py "$@"
