#!/usr/bin/env bash
#
# Run the async migration demo (cinder-asyncmig-demo) in the shared tox
# virtualenv, after installing the system packages it needs. Arguments go to
# cinder-asyncmig-demo.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/install-system-deps.sh
exec .venv-tools/bin/tox -e demo -- "$@"
