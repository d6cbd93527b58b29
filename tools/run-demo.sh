#!/usr/bin/env bash
#
# Run the async migration demo (cinder-asyncmig-sandbox demo) in the shared
# tox virtualenv, after installing the system packages it needs and, with
# --ceph-release reef|tentacle, building (or reusing) that release's root.
# Arguments go to cinder-asyncmig-sandbox demo.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/install-system-deps.sh

release=
args=("$@")
for i in "${!args[@]}"; do
    case "${args[$i]}" in
        --ceph-release) release=${args[$((i + 1))]:-} ;;
        --ceph-release=*) release=${args[$i]#--ceph-release=} ;;
    esac
done
if [ -n "$release" ] && [ "$release" != pacific ]; then
    PYTHONPATH=$PWD python3 -m cinder_asyncmig.cmd.roots build "$release"
fi

exec .venv-tools/bin/tox -e demo -- "$@"
