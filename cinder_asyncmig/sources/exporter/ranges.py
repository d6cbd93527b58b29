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

"""HTTP byte ranges as librbd's http stream asks for them.

Single ranges only (``a-b``, ``a-``, ``-n``); anything else is not
satisfiable (416).
"""

import re

from oslo_log import log as logging


LOG = logging.getLogger(__name__)
_RANGE = re.compile(r'^bytes=(\d{0,19})-(\d{0,19})$')


# -- serving ----------------------------------------------------------------

class RangeNotSatisfiable(ValueError):
    """The Range header names no single byte range of the LUN."""


def parse_range(header, size):
    """Return the byte range a ``Range`` header asks for.

    Only one range per request is supported (librbd sends one); several
    ranges, another unit or a malformed header are not satisfiable.

    :param header: the header's value, or None when there is none.
    :param size: the LUN's size in bytes.
    :returns: None for the whole LUN, else ``(first, last)`` inclusive.
    :raises RangeNotSatisfiable: when the header names no range of the LUN.
    """
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        raise RangeNotSatisfiable(header)
    first, last = match.groups()
    if not first and not last:
        raise RangeNotSatisfiable(header)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size - 1
    first = int(first)
    if first >= size:
        raise RangeNotSatisfiable(header)
    if not last:
        return first, size - 1
    last = int(last)
    if last < first:
        raise RangeNotSatisfiable(header)
    return first, min(last, size - 1)
