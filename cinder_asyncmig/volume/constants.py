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

"""Names users and operators see, shared by the services and the tools."""

# migration_status while the volume is usable on the target and its data
# is copied in the background
ATTACHABLE = 'migrating_attachable'
# volume metadata key holding the copy's progress while it runs, e.g.
# "42.0% (430 of 1024 MiB, 180 MiB/s)"; removed at success
PROGRESS_KEY = 'async_migration_progress'
# admin metadata key on the source side while the target takes over
TARGET_KEY = 'asyncmig_target_host'
# admin metadata key on the target side from the hand-over until the
# source is cleaned up: the source backend's host@backend#pool
SOURCE_KEY = 'asyncmig_source_host'
# migration_status of a migrated volume whose source could not be removed
# (Cinder's own meaning of it); the volume is fully usable
SOURCE_LEFT = 'deleting'
# admin metadata key of a migration whose copy stopped on an error no retry
# gets past (its migration_status is "error"): the error's type; a restart
# of the target volume service resumes the copy
FAILED_KEY = 'asyncmig_copy_failed'
# name of a volume's lock in Cinder's coordination: its id, then this
LOCK_SUFFIX = '-asyncmig'
# admin metadata key of a migration an operator paused: when, in epoch
# seconds; its copy starts again only once resumed
PAUSED_KEY = 'asyncmig_paused'
# admin metadata key of a migration an operator is aborting: "force" when
# an import-only one's writes are discarded, else "linked"; a restart of
# the target volume service finishes the abort
ABORTING_KEY = 'asyncmig_aborting'
# admin metadata key of a retype's migration, from the hand-over to its
# end: the new volume type's id, which the volume takes with success
NEW_TYPE_KEY = 'asyncmig_new_type'
