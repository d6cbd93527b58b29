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

"""How a source volume becomes a remote parent of the destination.

Each kind of source is a module implementing :class:`base.SourceKind
<cinder_asyncmig.sources.base.SourceKind>`: it describes the source from
what the source side tells (its backend's capabilities and the volume),
says whether this target can take it over, and takes it over.
:mod:`~cinder_asyncmig.sources.registry` asks the kinds best first.
"""
