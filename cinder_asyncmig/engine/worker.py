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

"""librbd migration execute in a child process.

librbd gives no way to stop ``migration_execute`` once it runs (its
progress callback cannot cancel), and a librbd crash would take the whole
cinder-volume service down with it. So execute runs in a child process
of its own session: it can be stopped with a signal, it keeps copying if
cinder-volume is restarted, and a restarted service adopts it by pid.

The child reports through a small JSON status file it replaces
atomically: its pid, its librados address (so that a dead worker's watch
can be blocklisted instead of waiting ~30 s for it to time out), and the
objects copied so far.

A worker whose client is blocklisted (a peer of a target cluster took the
migration over from the member that started it) ends by itself
(:class:`FenceWatch`): librbd's execute stops copying then, but does not
return.

The copy's cap, in bytes per second, is in a file of its own next to the
status file (:func:`write_rate`); the child reads it again whenever it
changes, so the cap can be changed while the copy runs. :class:`Pacer`
holds the copy to it, counting the data of the objects copied
(:class:`Allocation`), not the holes librbd skips.
"""

import argparse
import array
import bisect
import errno
import json
# the standard library's: oslo.log would add ~0.12 s to every worker start,
# and records reach the same handlers
import logging
import os
import socket
import sys
import threading
import time

LOG = logging.getLogger(__name__)

RUNNING = 'running'
DONE = 'done'
FAILED = 'failed'
_MODULE = 'cinder_asyncmig.engine.worker'
_REPORT_INTERVAL = 0.5
# how often the parent looks for the end of a copy between two polls
_END_CHECK = 0.05
# longest sleep of the pacer before it looks at the cap again
_RATE_CHECK = 0.5
# how far behind its cap a copy may fall before the pacer forgets the lag:
# a copy slowed down by the cluster does not then rush ahead
_MAX_LAG = 1.0
# seconds without progress before the worker asks whether it is fenced,
# and between two asks
_FENCE_CHECK = 5.0


def write_status(path, status):
    tmp = '%s.%d.tmp' % (path, os.getpid())
    with open(tmp, 'w') as f:
        f.write(json.dumps(status))
    os.replace(tmp, path)


def read_status(path):
    """Return the last status a worker wrote, {} if there is none."""
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return {}


def rate_path(status_path):
    return status_path + '.rate'


def read_rate(status_path):
    """The cap last set for a copy, or None if none was."""
    return read_status(rate_path(status_path)).get('max_bytes_per_sec')


def write_rate(status_path, max_bytes_per_sec):
    """Set the cap of the copy reporting to ``status_path`` (0: none)."""
    write_status(rate_path(status_path),
                 {'max_bytes_per_sec': int(max_bytes_per_sec)})


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_rate(status_path):
    """Remove the cap of a copy that has ended."""
    _remove(rate_path(status_path))


def log_path(status_path):
    """Where the worker reporting to ``status_path`` logs."""
    return status_path + '.log'


def remove_files(status_path):
    """Remove what the worker of a migration that has ended left.

    Its status, cap and log; nothing reads them once the migration is
    committed or rolled back.
    """
    for path in (status_path, rate_path(status_path), log_path(status_path)):
        _remove(path)


class Allocation(object):
    """Which objects of a migrating image hold data, to pace by data.

    librbd reports a copy's progress as the number of the object it has
    copied up to, holes included, and copies a hole in no time from an RBD
    source. Pacing by the image's size would hold a thin volume (1 TiB
    holding 100 MiB) to hours under a cap its data passes in a second.
    The destination's diff, with its migration source as parent, names the
    objects that hold data. An import-only migration counts every object:
    librbd's diff of one crashes the client on some releases (SIGFPE on
    16.2 with a raw stream, SIGSEGV on 20.2 for an exact diff), and a raw
    stream's copy reads and writes every object anyway.

    :param object_size: bytes of one object.
    :param objects: the image's number of objects.
    :param allocated: sorted numbers of the objects holding data, or None
                      when unknown (every object counts).
    """

    def __init__(self, object_size, objects, allocated=None):
        self.object_size = object_size
        self.objects = objects
        self._allocated = allocated

    @classmethod
    def of_image(cls, image, import_only=False):
        """The allocation of an open image, its migration source included.

        One pass over the object maps; an import-only migration, an image
        with striping, or one whose diff fails, counts every object.
        """
        import rbd

        object_size = image.stat()['obj_size']
        size = image.size()
        objects = -(-size // object_size)
        if import_only or image.stripe_count() > 1:
            return cls(object_size, objects)
        allocated = array.array('q')

        def add(offset, length, exists):
            if not exists:
                return
            first = offset // object_size
            if allocated and allocated[-1] >= first:
                first = allocated[-1] + 1
            allocated.extend(range(first,
                                   (offset + length - 1) // object_size + 1))

        try:
            image.diff_iterate(0, size, None, add, include_parent=True,
                               whole_object=True)
        except rbd.Error as exc:
            LOG.warning('Pacing %s by size: its allocation is unknown (%s).',
                        image.get_name(), exc)
            return cls(object_size, objects)
        return cls(object_size, objects, allocated)

    def data_before(self, object_no):
        """Bytes of data in the objects numbered below ``object_no``."""
        if self._allocated is None:
            count = min(object_no, self.objects)
        else:
            count = bisect.bisect_left(self._allocated, object_no)
        return count * self.object_size

    @property
    def data(self):
        """Bytes of data in the whole image."""
        return self.data_before(self.objects)


class _Watch(threading.Thread):
    """A daemon thread that looks at something every ``interval`` s."""

    def __init__(self, interval):
        super(_Watch, self).__init__(daemon=True)
        self._interval = interval
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()


class LockWatch(_Watch):
    """Tells which other client, if any, holds the image's exclusive lock.

    librbd runs execute in the client that holds the lock (a hypervisor
    writing to the volume) and only sends this process its progress,
    acknowledged after the callback returns. That copy does not wait for
    the acknowledgements, so blocking the callback would not slow it: it
    would only delay the progress seen here, and the end of execute, by
    however long the pace says. While another client holds the lock the
    copy is not paced.

    :param me: this client's entity name (``client.<id>``).
    :param on_change: called with the new holder (or None) when it changes,
        progress or not: a holder cut off from this process may send none.
    """

    def __init__(self, ioctx, name, me, interval=_RATE_CHECK,
                 on_change=None):
        super(LockWatch, self).__init__(interval)
        self._ioctx = ioctx
        self._name = name
        self._me = me
        self._on_change = on_change
        self.elsewhere = None  # 'client.<id> <address>' of another holder

    def run(self):
        import rbd

        try:
            with rbd.Image(self._ioctx, self._name,
                           read_only=True) as image:
                while not self._halt.is_set():
                    try:
                        holder = self.other_holder(image.list_lockers(),
                                                   self._me)
                    except rbd.Error as exc:
                        LOG.warning('Cannot read the lock of %s: %s',
                                    self._name, exc)
                    else:
                        if holder != self.elsewhere:
                            self.elsewhere = holder
                            if self._on_change:
                                self._on_change(holder)
                    self._halt.wait(self._interval)
        except rbd.Error as exc:
            # execute reports what is wrong with the image
            LOG.warning('Cannot watch the lock of %s: %s', self._name, exc)

    @staticmethod
    def other_holder(lockers, me):
        """The holder in ``list_lockers()`` if it is not ``me``, or None."""
        for entity, _cookie, address in (lockers or {}).get('lockers', ()):
            if entity != me:
                return '%s %s' % (entity, address)
        return None


class FenceWatch(_Watch):
    """Call ``on_fenced`` once this worker's client is blocklisted.

    Once blocklisted, librbd's execute (16.2) stops copying and never
    returns, and nothing this process does reaches the OSDs again. While
    the copy stands still, this reads the blocklist in the monitors' OSD
    map (``osd dump``, which ``profile rbd`` may read) every
    ``interval`` seconds.

    :param last_progress: a callable, when the copy last moved
        (``time.monotonic()``).
    """

    def __init__(self, client, addr, last_progress, on_fenced,
                 interval=_FENCE_CHECK):
        super(FenceWatch, self).__init__(interval)
        self._client = client
        self._addr = addr
        self._last_progress = last_progress
        self._on_fenced = on_fenced

    def run(self):
        import rados

        while not self._halt.wait(self._interval):
            if time.monotonic() - self._last_progress() < self._interval:
                continue
            try:
                ret, out, err = self._client.mon_command(json.dumps(
                    {'prefix': 'osd dump', 'format': 'json'}), b'',
                    # whole seconds: 18.2's binding takes no float
                    timeout=int(self._interval))
            except rados.Error as exc:
                LOG.warning('Cannot read the OSD map: %s', exc)
                continue
            if ret:
                LOG.warning('Cannot read the OSD map: %s', err)
                continue
            if self.listed(self._addr, json.loads(out)):
                self._on_fenced()
                return

    @staticmethod
    def listed(addr, osd_map):
        """Whether ``addr`` is in the blocklist of ``osd_map``."""
        def bare(address):
            # 'v2:127.0.0.1:0/123' and '127.0.0.1:0/123' are one client
            return {a.split(':', 1)[1] if a.startswith(('v1:', 'v2:', 'any:'))
                    else a for a in address.strip('[]').split(',')}

        listed = osd_map.get('blocklist', osd_map.get('blacklist')) or {}
        return any(bare(addr) & bare(entry) for entry in listed)


class Pacer(object):
    """Holds a copy to its cap by blocking librbd's progress callback.

    librbd calls the callback of ``migration_execute`` on the thread that
    completes the object copies, and issues no further copy while it
    blocks: the copy then runs at most one batch of
    ``rbd_concurrent_management_ops`` objects ahead of the cap. This holds
    where execute runs in this process, not where librbd hands it to the
    client holding the image's exclusive lock (:class:`LockWatch`).

    :param path: the rate file (:func:`write_rate`), read again every
                 half second of copying.
    """

    def __init__(self, path, clock=time.monotonic, sleep=time.sleep):
        self._path = path
        self._clock = clock
        self._sleep = sleep
        self._read_at = None
        self.rate = 0
        self._anchor = None  # (time, bytes, rate) the pace counts from

    def read_rate(self):
        """The cap in bytes per second (0: none), read again if due."""
        now = self._clock()
        if self._read_at is None or now - self._read_at >= _RATE_CHECK:
            self._read_at = now
            rate = read_status(self._path).get('max_bytes_per_sec', 0)
            self.rate = rate if isinstance(rate, int) and rate > 0 else 0
        return self.rate

    def wait(self, bytes_done):
        """Return once ``bytes_done`` are within the cap."""
        while True:
            rate = self.read_rate()
            now = self._clock()
            if not rate:
                self._anchor = None
                return
            if self._anchor is None or self._anchor[2] != rate:
                self._anchor = (now, bytes_done, rate)
                return
            started, base, _rate = self._anchor
            due = started + (bytes_done - base) / float(rate)
            if due <= now:
                if now - due > _MAX_LAG:
                    self._anchor = (now, bytes_done, rate)
                return
            self._sleep(min(due - now, _RATE_CHECK))


def _children():
    # for the parent only: psutil would add ~25 ms to every worker start
    from cinder_asyncmig import children
    return children


class ExecuteWorker(object):
    """Parent-side handle of one execute worker process."""

    def __init__(self, status_path, child):
        self.status_path = status_path
        self._child = child

    @property
    def pid(self):
        return self._child.pid

    @classmethod
    def start(cls, image, pool, status_path, conf=None, user=None,
              cluster=None, namespace='', max_bytes_per_sec=0):
        """Start a worker running execute on ``pool/image``.

        The worker connects with the same configuration file and user as
        the driver, so no key ever appears on a command line.

        :param max_bytes_per_sec: the copy's cap, 0 for none; change it
                                  with :func:`write_rate`.
        """
        args = [sys.executable, '-m', _MODULE, '--pool', pool,
                '--image', image, '--status-file', status_path]
        for flag, value in (('--conf', conf), ('--user', user),
                            ('--cluster', cluster),
                            ('--namespace', namespace)):
            if value:
                args += [flag, value]
        _remove(status_path)
        write_rate(status_path, max_bytes_per_sec)
        child = _children().Child.spawn(args, log_path(status_path))
        LOG.info('Started migration worker %(pid)d for %(pool)s/%(image)s.',
                 {'pid': child.pid, 'pool': pool, 'image': image})
        return cls(status_path, child)

    @classmethod
    def adopt(cls, status_path, image):
        """Return a handle on a worker still running for ``image``, if any.

        A pid is trusted only when that process is a worker started for
        the same image and status file (pids get reused).
        """
        # as :meth:`start` orders them
        child = _children().Child.adopt(
            read_status(status_path).get('pid'), _MODULE,
            '--image %s --status-file %s' % (image, status_path))
        if child is None:
            return None
        LOG.info('Adopting running migration worker %(pid)d for %(image)s.',
                 {'pid': child.pid, 'image': image})
        return cls(status_path, child)

    def read(self):
        return read_status(self.status_path)

    def running(self):
        return self._child.running()

    def wait(self, timeout):
        """Sleep up to ``timeout`` s; return early when the copy ends.

        The end is a final phase in the status file or the worker's exit,
        seen within 50 ms: the commit need not wait for the next poll.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.read().get('phase') in (DONE, FAILED) or
                    not self.running()):
                return
            time.sleep(min(_END_CHECK, max(0, deadline - time.monotonic())))

    def stop(self, timeout=10):
        """Stop the worker: SIGTERM, then SIGKILL after ``timeout`` s."""
        self._child.stop(timeout)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Run librbd migration execute on one image and report '
                    'progress to a status file.')
    parser.add_argument('--conf')
    parser.add_argument('--user')
    parser.add_argument('--cluster')
    parser.add_argument('--pool', required=True)
    parser.add_argument('--namespace', default='')
    parser.add_argument('--image', required=True)
    parser.add_argument('--status-file', required=True)
    args = parser.parse_args(argv)

    # only the bindings: importing Cinder would add ~0.3 s to every start
    import rados
    import rbd

    status = {'pid': os.getpid(), 'host': socket.gethostname(),
              'image': args.image, 'pool': args.pool, 'phase': RUNNING,
              'done': 0, 'total': 0, 'started_at': time.time()}
    # the progress callback's thread and the lock watch's both report
    reporting = threading.Lock()

    def report(**changes):
        with reporting:
            status.update(changes)
            write_status(args.status_file, status)

    client = rados.Rados(rados_id=args.user, clustername=args.cluster,
                         conffile=args.conf)
    client.connect()
    try:
        status['addr'] = client.get_addrs()
        ioctx = client.open_ioctx(args.pool)
        if args.namespace:
            ioctx.set_namespace(args.namespace)
        pacer = Pacer(rate_path(args.status_file))
        # the cap from the first report on, before the first progress
        report(max_bytes_per_sec=pacer.read_rate())
        try:
            source_pool = rbd.RBD().migration_status(
                ioctx, args.image)['source_pool_id']
        except rbd.Error:
            source_pool = -1  # execute will say what is wrong
        with rbd.Image(ioctx, args.image, read_only=True) as image:
            allocation = Allocation.of_image(image,
                                             import_only=source_pool < 0)
        status['data_total'] = allocation.data
        last = [0.0]
        moved = [time.monotonic()]

        def fenced():
            LOG.error('This worker\'s client %s is blocklisted: another '
                      'volume service took the migration over. Ending.',
                      status['addr'])
            report(phase=FAILED, error_type='ConnectionShutdown',
                   errno=errno.ESHUTDOWN, updated_at=time.time())
            # execute does not return once blocklisted
            os._exit(1)

        fence = FenceWatch(client, status['addr'], lambda: moved[0], fenced)
        fence.start()
        lock = LockWatch(ioctx, args.image,
                         'client.%d' % client.get_instance_id(),
                         on_change=lambda holder: report(copy_in=holder))
        lock.start()

        def on_progress(done, total):
            now = time.monotonic()
            moved[0] = now
            rate = pacer.read_rate()
            # librbd counts objects; scaled in case a release counts else
            data = allocation.data_before(
                done * allocation.objects // total if total else 0)
            elsewhere = lock.elsewhere
            if now - last[0] >= _REPORT_INTERVAL or done >= total:
                last[0] = now
                report(done=done, total=total, data_done=data,
                       updated_at=time.time(), max_bytes_per_sec=rate,
                       copy_in=elsewhere)
            if not elsewhere:
                pacer.wait(data)
            return 0  # librbd wants an int, and ignores it

        try:
            rbd.RBD().migration_execute(ioctx, args.image,
                                        on_progress=on_progress)
        except rbd.Error as exc:
            # the parent maps the type; librbd's message is unreliable
            report(phase=FAILED, error_type=type(exc).__name__,
                   errno=getattr(exc, 'errno', None))
            return 1
        finally:
            fence.stop()
            lock.stop()
            lock.join()
            ioctx.close()
        report(phase=DONE, updated_at=time.time())
        return 0
    finally:
        client.shutdown()


if __name__ == '__main__':
    sys.exit(main())
