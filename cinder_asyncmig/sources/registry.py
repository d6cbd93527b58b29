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

"""The source kinds a target knows, best first, and the choice among them.

The order is :data:`kinds.ALL <cinder_asyncmig.sources.kinds.ALL>`: a
linked migration can be rolled back without losing a write, the
import-only ones cannot; librbd reading the source itself beats reading a
shared file, which beats an exporter on this host.
"""

from cinder.i18n import _

from cinder_asyncmig.sources import exported
from cinder_asyncmig.sources import file
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.sources import linked
from cinder_asyncmig.sources import native

_CLASSES = {cls.name: cls for cls in (linked.LinkedKind,
                                      native.NativeKind,
                                      file.SharedFileKind,
                                      exported.ExporterKind)}


def load(driver):
    """One :class:`~cinder_asyncmig.sources.base.SourceKind` of each kind.

    :param driver: the target driver.
    :returns: the kinds, best first.
    """
    return [_CLASSES[name](driver) for name in kinds.ALL]


def choose(source_kinds, enabled, offer):
    """The first kind that is enabled and can take the offered source.

    :param source_kinds: the kinds, best first, as :func:`load` gives them.
    :param enabled: the names of the kinds the backend accepts.
    :param offer: the :class:`~cinder_asyncmig.sources.base.Offer`.
    :returns: ``(kind, reasons)``: the kind, None when none can take the
              source; why each better kind did not, best first, each
              prefixed with the kind's name.
    """
    reasons = []
    for kind in source_kinds:
        if kind.name in enabled:
            reason = kind.decline_reason(offer)
            if reason is None:
                return kind, reasons
        else:
            reason = _('off here (async_migration_source_kinds)')
        reasons.append('%s: %s' % (kind.name, reason))
    return None, reasons
