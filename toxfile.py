# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""In-tree tox plugin: let several tox environments share one virtualenv.

tox 4 records the environment name in ``.tox-info.json`` and rebuilds the
virtualenv whenever an environment with another name uses the same
``env_dir`` (https://github.com/tox-dev/tox/issues/2788). Cinder's
dependency tree takes minutes to install, so the environments that need it
select the ``shared-virtualenv`` runner below, which records the directory
name instead of the environment name. Everything else tox compares (the
interpreter, the deps, the package) still rebuilds the virtualenv when it
changes.

Do not run environments that share a virtualenv in parallel (``tox -p``).
"""

from tox.plugin import impl
from tox.tox_env.info import Info
from tox.tox_env.python.virtual_env.runner import VirtualEnvRunner


class _SharedInfo(Info):
    """The ``.tox-info.json`` record, keyed on the virtualenv directory."""

    def __init__(self, path):
        super().__init__(path)
        self._shared_name = path.name

    def compare(self, value, section, sub_section=None):
        if section == 'ToxEnv' and isinstance(value, dict):
            value = dict(value, name=self._shared_name)
        return super().compare(value, section, sub_section)


class SharedVirtualEnvRunner(VirtualEnvRunner):
    """A virtualenv runner that environment names can share."""

    @staticmethod
    def id():
        return 'shared-virtualenv'

    @property
    def cache(self):
        return _SharedInfo(self.env_dir)


@impl
def tox_register_tox_env(register):
    register.add_run_env(SharedVirtualEnvRunner)
