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

"""A thin, typed wrapper of librbd live migration.

``state`` names the migration states, ``specs`` builds source specs,
``features`` tells what the local librbd can do, ``migration`` runs the
steps (prepare, status, commit, abort) with librbd errors mapped to the
plugin's exceptions, and ``worker`` runs execute, the long copy, in a child
process that can be stopped, resumed and adopted after a restart.
"""
