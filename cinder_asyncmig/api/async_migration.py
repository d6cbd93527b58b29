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

"""The cinder-api extension of async migration.

Loaded next to Cinder's standard extensions, with no change to Cinder,
by two values of ``[DEFAULT] osapi_volume_extension``:
``cinder.api.contrib.standard_extensions`` and
``cinder_asyncmig.api.async_migration.Async_migration``.

So far it teaches cinder-api the plugin's user messages
(:mod:`cinder_asyncmig.messages`), so that ``/messages`` renders them.
"""

from cinder.api import extensions

from cinder_asyncmig import messages


class Async_migration(extensions.ExtensionDescriptor):
    """Asynchronous volume migration to Ceph RBD target backends."""

    name = 'AsyncMigration'
    alias = 'os-async-migration'
    updated = '2026-12-04T00:00:00+00:00'

    def __init__(self, ext_mgr):
        messages.register()
        super(Async_migration, self).__init__(ext_mgr)
