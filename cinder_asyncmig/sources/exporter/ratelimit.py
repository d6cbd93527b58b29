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

"""The read cap of an HTTP exporter: one token bucket for all connections.

The NBD transport caps with a qemu throttle group instead (see
:mod:`~cinder_asyncmig.sources.exporter.nbd`).
"""

import threading
import time

from oslo_log import log as logging

from cinder_asyncmig.sources.exporter import configuration

LOG = logging.getLogger(__name__)


class TokenBucket(object):
    """A bandwidth cap shared by every connection of one exporter.

    Tokens are bytes. A reservation may take the bucket below zero, and
    the caller then sleeps until that debt is paid back: chunks larger
    than the burst still pass, and the bytes released by time ``t`` never
    exceed ``burst + rate * t`` whatever the number of connections. Under
    a steady demand the long-run rate is the configured one.
    """

    def __init__(self, rate, burst, clock=time.monotonic, sleep=time.sleep):
        """Create a full bucket.

        :param rate: bytes per second, > 0.
        :param burst: bytes that may pass at once after an idle period.
        :param clock: returns monotonic seconds.
        :param sleep: waits a number of seconds.
        """
        if rate <= 0 or burst <= 0:
            raise ValueError('rate and burst must be positive')
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, amount):
        """Take ``amount`` tokens now.

        :returns: the seconds the caller must wait before using them.
        """
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._last)
            self._tokens = min(self.burst,
                               self._tokens + elapsed * self.rate)
            self._last = now
            self._tokens -= amount
            return max(0.0, -self._tokens / self.rate)

    def consume(self, amount):
        """Wait until ``amount`` bytes may be sent."""
        wait = self.reserve(amount)
        if wait > 0:
            self._sleep(wait)


def make_bucket(max_bytes_per_sec, clock=time.monotonic, sleep=time.sleep):
    """Return the bucket and the chunk size for a cap (0: no bucket).

    The chunk is about 1/20 s of data, so the cap holds over short
    windows too; the burst is 1/10 s of data, at least one chunk.

    :returns: ``(bucket or None, chunk_bytes)``.
    """
    if not max_bytes_per_sec:
        return None, configuration.CHUNK_BYTES
    chunk = min(configuration.CHUNK_BYTES, max(
        configuration.MIN_CHUNK_BYTES, max_bytes_per_sec // 20))
    burst = max(chunk, max_bytes_per_sec // 10)
    return TokenBucket(max_bytes_per_sec, burst, clock, sleep), chunk
