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

"""Functional test base: a real one-node Ceph cluster with cephx on.

One cluster serves a whole test process (started on first use, stopped
at exit); every test class gets fresh pools. The source volume lives on
Cinder's stock RBD driver, the destination on the plugin's driver, both
connected as the same limited client ('profile rbd' on both pools), as a
deployment with two RBD backends in one cluster has.
"""

import atexit
import hashlib
import os
import shutil
import tempfile
import uuid

from cinder import context
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_utils import units
import testtools

from cinder_asyncmig.sandbox import backends
from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.sandbox import roots
from cinder_asyncmig.volume.drivers import rbd as target_rbd

MEMSTORE_BYTES = int(os.environ.get('ASYNCMIG_TEST_MEMSTORE_GIB',
                                    '8')) * units.Gi
CHUNK = 4 * units.Mi

_cluster = None


def _test_dir():
    base = os.environ.get('ASYNCMIG_TEST_DIR') or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    return base


def cluster():
    """Return the process' cluster, starting it on first use."""
    global _cluster
    if _cluster is None:
        directory = tempfile.mkdtemp(prefix='ceph-', dir=_test_dir())
        os.rmdir(directory)
        _cluster = ceph.CephCluster.up(directory,
                                       memstore_bytes=MEMSTORE_BYTES)
        atexit.register(_cluster.down)
    return _cluster


def release_label():
    """The Ceph release of the tests' clients, for skip reasons.

    E.g. ``reef (librbd 1.18) on a tentacle cluster``.
    """
    import rbd
    label = '%s (librbd %s)' % (roots.current(), '.'.join(
        str(n) for n in rbd.RBD().version()[:2]))
    cluster_release = ceph.default_release()
    if cluster_release != roots.current():
        label += ' on a %s cluster' % cluster_release
    return label


# the tests' name for it
image_sha256 = ceph.image_sha256


class FunctionalTestCase(testtools.TestCase):
    """Pools, drivers and helpers on the shared cluster."""

    # more options of the target backend
    TARGET_OPTIONS = {}

    @classmethod
    def setUpClass(cls):
        super(FunctionalTestCase, cls).setUpClass()
        cls.cluster = cls.make_cluster()
        suffix = uuid.uuid4().hex[:8]
        cls.src_pool, cls.dst_pool = 'src-' + suffix, 'dst-' + suffix
        for pool in (cls.src_pool, cls.dst_pool):
            cls.cluster.create_pool(pool)
        cls.state_dir = tempfile.mkdtemp(prefix='asyncmig-state-',
                                         dir=_test_dir())
        cls.source_driver = backends.make_driver(
            cinder_rbd.RBDDriver, cls.cluster, cls.src_pool)
        cls.target_driver = backends.make_driver(
            target_rbd.AsyncMigrationRBDDriver, cls.cluster, cls.dst_pool,
            async_migration_state_dir=cls.state_dir,
            async_migration_poll_interval=0.2,
            # the copy's cap has its own test
            async_migration_copy_max_bytes_per_sec=0, **cls.TARGET_OPTIONS)
        cls.rados = cls.cluster.connect()
        cls.src_ioctx = cls.rados.open_ioctx(cls.src_pool)
        cls.dst_ioctx = cls.rados.open_ioctx(cls.dst_pool)

    @classmethod
    def make_cluster(cls):
        """The class's cluster: the process's, by default."""
        return cluster()

    @classmethod
    def tearDownClass(cls):
        cls.src_ioctx.close()
        cls.dst_ioctx.close()
        cls.rados.shutdown()
        for pool in (cls.src_pool, cls.dst_pool):
            cls.cluster.delete_pool(pool)
        shutil.rmtree(cls.state_dir, ignore_errors=True)
        super(FunctionalTestCase, cls).tearDownClass()

    def setUp(self):
        super(FunctionalTestCase, self).setUp()
        self.ctxt = context.get_admin_context()

    def make_volume(self, size_gib=1, size_bytes=None):
        """Create a volume on the source backend with Cinder's driver."""
        volume = backends.new_volume(self.ctxt, self.source_driver,
                                     size_gib)
        if size_bytes is not None:
            import rbd
            with rbd.Image(self.src_ioctx, volume.name) as img:
                img.resize(size_bytes)
        # the cluster holds one test's volumes, not a whole class's
        self.addCleanup(self.remove_image, volume.name)
        return volume

    def remove_image(self, name):
        """Remove an image from both pools, ending its live migration."""
        import rbd
        for ioctx in (self.dst_ioctx, self.src_ioctx):
            try:
                rbd.RBD().remove(ioctx, name)
            except rbd.ImageNotFound:
                pass
            except rbd.Error:
                # a migration still under way; the pools go at the end
                # of the class whatever is left
                try:
                    rbd.RBD().migration_abort(ioctx, name)
                    rbd.RBD().remove(ioctx, name)
                except rbd.Error:
                    pass

    def src_host(self):
        return backends.host_dict(self.source_driver)


#: a hypervisor reading an image at random through librbd, 4 KiB at a
#: time, until it is stopped: one line per read, "TIME OFFSET SHA256".
#: Arguments: the cluster's conf, the client's id, the pool, the image,
#: and "lock" to hold the image's exclusive lock, as a hypervisor that
#: writes does (reads alone take no lock).
HYPERVISOR_READER = """
import hashlib, random, sys, time
import rados, rbd
conf, user, pool, name = sys.argv[1:5]
cluster = rados.Rados(conffile=conf, rados_id=user)
cluster.connect(timeout=30)
rng = random.Random(name)
with rbd.Image(cluster.open_ioctx(pool), name) as image:
    if sys.argv[5:] == ['lock']:
        image.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
    blocks = image.size() // 4096
    while True:
        at = rng.randrange(blocks) * 4096
        digest = hashlib.sha256(image.read(at, 4096)).hexdigest()
        print('%.3f %d %s' % (time.time(), at, digest), flush=True)
"""


def checked_reads(log, model):
    """The reads in a :data:`HYPERVISOR_READER` log, checked.

    :param model: the :class:`ImageModel` of the image it read.
    :returns: ``[(time.time() of the read, whether the block read is
              the model's)]``.
    """
    found = []
    with open(log) as f:
        for line in f:
            fields = line.split()
            if len(fields) != 3 or not fields[1].isdigit():
                continue  # a warning of librados, or Python's
            at = int(fields[1])
            found.append((float(fields[0]), fields[2] == hashlib.sha256(
                model.data[at:at + 4096]).hexdigest()))
    return found


def reads_per_second(reads, since, until):
    """How many of ``reads`` (:func:`checked_reads`) each second saw."""
    return [sum(1 for when, _ in reads if since + i <= when < since + i + 1)
            for i in range(int(until - since))]


class ImageModel(object):
    """The bytes an image should hold, kept beside the real image."""

    def __init__(self, size):
        self.data = bytearray(size)

    def write(self, ioctx, name, offset, payload):
        import rbd
        with rbd.Image(ioctx, name) as img:
            img.write(payload, offset)
        self.apply(offset, payload)

    def apply(self, offset, payload):
        end = offset + len(payload)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[offset:end] = payload

    def resize(self, size):
        if size > len(self.data):
            self.data.extend(bytes(size - len(self.data)))
        else:
            del self.data[size:]

    def sha256(self):
        return hashlib.sha256(self.data).hexdigest()


def fill_with_holes(model, ioctx, name, rng, density=0.6):
    """Fill an image with random data and holes.

    Random data in about ``density`` of the 4 MiB extents, holes elsewhere,
    plus writes at unaligned offsets and in the last, partial extent.
    """
    size = len(model.data)
    offset = 0
    while offset < size:
        n = min(CHUNK, size - offset)
        if rng.random() < density:
            model.write(ioctx, name, offset, rng.randbytes(n))
        offset += n
    for _ in range(8):
        at = rng.randrange(0, size - 4097)
        model.write(ioctx, name, at, rng.randbytes(4097))
    model.write(ioctx, name, size - 1000, rng.randbytes(1000))
