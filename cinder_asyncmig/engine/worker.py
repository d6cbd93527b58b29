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
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from oslo_log import log as logging
from oslo_serialization import jsonutils

LOG = logging.getLogger(__name__)

RUNNING = 'running'
DONE = 'done'
FAILED = 'failed'
_MODULE = 'cinder_asyncmig.engine.worker'
_REPORT_INTERVAL = 0.5


def write_status(path, status):
    tmp = '%s.%d.tmp' % (path, os.getpid())
    with open(tmp, 'w') as f:
        f.write(jsonutils.dumps(status))
    os.replace(tmp, path)


def read_status(path):
    """Return the last status a worker wrote, {} if there is none."""
    try:
        with open(path) as f:
            return jsonutils.loads(f.read())
    except (OSError, ValueError):
        return {}


def pid_running(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except (OSError, IndexError):
        return False


def pid_cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().split(b'\0')
    except OSError:
        return []


class ExecuteWorker(object):
    """Parent-side handle of one execute worker process."""

    def __init__(self, status_path, pid, popen=None):
        self.status_path = status_path
        self.pid = pid
        self._popen = popen

    @classmethod
    def start(cls, image, pool, status_path, conf=None, user=None,
              cluster=None, namespace=''):
        """Start a worker running execute on ``pool/image``.

        The worker connects with the same configuration file and user as
        the driver, so no key ever appears on a command line.
        """
        args = [sys.executable, '-m', _MODULE, '--pool', pool,
                '--image', image, '--status-file', status_path]
        for flag, value in (('--conf', conf), ('--user', user),
                            ('--cluster', cluster),
                            ('--namespace', namespace)):
            if value:
                args += [flag, value]
        try:
            os.unlink(status_path)
        except FileNotFoundError:
            pass
        log_path = status_path + '.log'
        with open(log_path, 'ab') as log:
            popen = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log,
                                     start_new_session=True, close_fds=True)
        LOG.info('Started migration worker %(pid)d for %(pool)s/%(image)s.',
                 {'pid': popen.pid, 'pool': pool, 'image': image})
        return cls(status_path, popen.pid, popen)

    @classmethod
    def adopt(cls, status_path, image):
        """Return a handle on a worker still running for ``image``, if any.

        A pid is trusted only when that process is a worker started for
        the same image and status file (pids get reused).
        """
        status = read_status(status_path)
        pid = status.get('pid')
        if not pid or not pid_running(pid):
            return None
        cmdline = pid_cmdline(pid)
        if (_MODULE.encode() not in cmdline or
                image.encode() not in cmdline or
                status_path.encode() not in cmdline):
            return None
        LOG.info('Adopting running migration worker %(pid)d for %(image)s.',
                 {'pid': pid, 'image': image})
        return cls(status_path, pid)

    def read(self):
        return read_status(self.status_path)

    def running(self):
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_running(self.pid)

    def stop(self, timeout=10):
        """Stop the worker: SIGTERM, then SIGKILL after ``timeout`` s."""
        terminate(self.pid, self.running, timeout)


def terminate(pid, running, timeout=10):
    """SIGTERM a child process, then SIGKILL it after ``timeout`` s.

    :param running: tells whether it still runs (a Popen reaps it).
    :returns: True when it is gone.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not running():
            return True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout
        while running() and time.monotonic() < deadline:
            time.sleep(0.05)
    return not running()


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
    client = rados.Rados(rados_id=args.user, clustername=args.cluster,
                         conffile=args.conf)
    client.connect()
    try:
        status['addr'] = client.get_addrs()
        ioctx = client.open_ioctx(args.pool)
        if args.namespace:
            ioctx.set_namespace(args.namespace)
        write_status(args.status_file, status)
        last = [0.0]

        def on_progress(done, total):
            now = time.monotonic()
            if now - last[0] >= _REPORT_INTERVAL or done >= total:
                last[0] = now
                status.update(done=done, total=total, updated_at=time.time())
                write_status(args.status_file, status)
            return 0  # librbd wants an int, and ignores it

        try:
            rbd.RBD().migration_execute(ioctx, args.image,
                                        on_progress=on_progress)
        except rbd.Error as exc:
            # the parent maps the type; librbd's message is unreliable
            status.update(phase=FAILED, error_type=type(exc).__name__,
                          errno=getattr(exc, 'errno', None))
            write_status(args.status_file, status)
            return 1
        finally:
            ioctx.close()
        status.update(phase=DONE, updated_at=time.time())
        write_status(args.status_file, status)
        return 0
    finally:
        client.shutdown()


if __name__ == '__main__':
    sys.exit(main())
