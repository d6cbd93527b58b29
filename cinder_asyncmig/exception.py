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

"""Errors of the async migration plugin.

Every class derives from a ``cinder.exception`` type so that it is rebuilt
on the caller's side of an RPC call and rendered by the API like Cinder's
own errors.
"""

from cinder import exception
from cinder.i18n import _


class MigrationSourceRefused(exception.Invalid):
    message = _("Volume %(volume_id)s cannot be taken over from its "
                "source: %(reason)s")


class MigrationSourceInUse(MigrationSourceRefused):
    message = _("Volume %(volume_id)s cannot be taken over from its "
                "source: its image %(image)s is open by %(clients)d "
                "client(s). Detach the volume (or stop whatever maps it) "
                "and retry. A client that ended without closing the image "
                "still counts for up to 30 s (osd_client_watch_timeout).")


class MigrationSettingInvalid(MigrationSourceRefused):
    message = _("Volume %(volume_id)s cannot be taken over from its "
                "source: its metadata %(key)s must be %(expected)s.")


class MigrationSourceNotFound(exception.NotFound):
    message = _("The source image %(image)s of volume %(volume_id)s does "
                "not exist; nothing was migrated.")


class MigrationConflict(exception.Invalid):
    message = _("Cannot migrate %(image)s: %(reason)s")


class MigrationFeatureUnsupported(exception.Invalid):
    message = _("%(feature)s needs Ceph %(needed)s or later, but the "
                "librbd on this host is Ceph %(found)s. Use another source "
                "kind or upgrade the Ceph client packages.")


class MigrationAbortRefused(exception.Invalid):
    message = _("Refusing to abort the migration of %(image)s: "
                "%(reason)s")


class MigrationEngineError(exception.VolumeBackendAPIException):
    message = _("librbd live migration of %(image)s failed during "
                "%(step)s: %(reason)s")


class MigrationNoSpace(MigrationEngineError):
    message = _("librbd live migration of %(image)s failed during "
                "%(step)s: the pool is full. Free space in the pool, "
                "then retry.")


class MigrationLost(MigrationEngineError):
    """The migration cannot go on: retrying would not help."""
    message = _("The live migration of %(image)s cannot be completed: "
                "%(reason)s")


class ExporterError(exception.VolumeBackendAPIException):
    message = _("The HTTP exporter %(export_id)s failed: %(reason)s")


class ExporterStartError(ExporterError):
    message = _("The HTTP exporter %(export_id)s could not start: "
                "%(reason)s")


class ExporterPortTaken(ExporterStartError):
    message = _("The HTTP exporter %(export_id)s cannot start again: its "
                "port %(port)s on %(address)s is in use by another "
                "process. librbd recorded the exporter's URL, port "
                "included, when the migration began, so the exporter "
                "cannot move to another port. Free the port, then "
                "complete the migration again.")


class ExporterConflict(exception.Invalid):
    message = _("The HTTP exporter %(export_id)s already exists: "
                "%(reason)s")


class ExporterNotFound(exception.NotFound):
    message = _("No HTTP exporter %(export_id)s is recorded in "
                "%(state_dir)s, so it cannot be started again. Start a "
                "new export instead.")


class ExporterInvalid(exception.InvalidInput):
    message = _("Invalid HTTP exporter setting: %(reason)s")
