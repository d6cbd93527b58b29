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

"""User messages as cinder-api renders them, and refusals over RPC."""

from unittest import mock

from cinder.api import extensions
from cinder.api.v3 import messages as messages_api
from cinder import exception as cinder_exception
from cinder.message import message_field
from oslo_messaging.rpc import dispatcher
import testtools

from cinder_asyncmig.api import async_migration
from cinder_asyncmig import exception
from cinder_asyncmig import messages
from cinder_asyncmig.volume import manager


class UserMessageTest(testtools.TestCase):

    def render(self, detail):
        # what GET /messages answers for a record the manager stored
        record = {'action_id': messages.MIGRATE[0],
                  'event_id': 'VOLUME_VOLUME_%s_%s' % (messages.MIGRATE[0],
                                                       detail[0]),
                  'detail_id': detail[0]}
        # its __init__ opens the database; rendering needs none
        controller = messages_api.MessagesController.__new__(
            messages_api.MessagesController)
        controller._build_user_message(record)
        return record['user_message']

    def test_extension_teaches_cinder_api_the_texts(self):
        ext_mgr = extensions.ExtensionManager.__new__(
            extensions.ExtensionManager)
        ext_mgr.extensions = {}
        async_migration.Async_migration(ext_mgr)
        self.assertIn('os-async-migration', ext_mgr.extensions)
        text = self.render(messages.detail_of(exception.MigrationSourceInUse(
            volume_id='v', image='pool/volume-v', clients=1)))
        self.assertTrue(text.startswith('migrate volume asynchronously:'))
        self.assertIn('open by another client', text)
        self.assertIn('up to 30 seconds', text)

    def test_each_refusal_has_its_own_text(self):
        cases = [
            exception.MigrationSourceInUse(volume_id='v', image='i',
                                           clients=2),
            exception.MigrationSettingInvalid(volume_id='v', key='k',
                                              expected='a number'),
            exception.MigrationSourceNotFound(image='i', volume_id='v'),
            exception.MigrationSourceRefused(volume_id='v', reason='r'),
            exception.MigrationLost(image='i', reason='r'),
            RuntimeError('anything else'),
        ]
        texts = [self.render(messages.detail_of(exc)) for exc in cases]
        self.assertEqual(len(cases), len(set(texts)))
        for text in texts:
            self.assertNotIn(message_field.Detail.UNKNOWN_ERROR[1], text)

    def test_ids_meet_none_of_cinders_and_register_twice_adds_nothing(self):
        messages.register()
        messages.register()
        for table in (message_field.Action, message_field.Detail):
            ids = [entry[0] for entry in table.ALL]
            self.assertEqual(len(ids), len(set(ids)))


class RefusalOverRpcTest(testtools.TestCase):
    """How the target's RPC server logs what the endpoint raises.

    An ExpectedException at debug, anything else as "Exception during
    message handling" with its traceback.
    """

    def endpoint(self, error):
        volume_manager = mock.Mock()
        volume_manager.take_over.side_effect = error
        return manager.AsyncMigrationEndpoint(volume_manager)

    def test_a_refusal_is_an_expected_answer(self):
        for error in (cinder_exception.Invalid('in use'),
                      cinder_exception.NotFound('no source')):
            self.assertRaises(dispatcher.ExpectedException,
                              self.endpoint(error).migrate_volume_target,
                              'ctxt', 'volume', 'src')

    def test_a_failure_stays_a_server_error(self):
        error = cinder_exception.VolumeBackendAPIException(data='librbd')
        self.assertRaises(cinder_exception.VolumeBackendAPIException,
                          self.endpoint(error).migrate_volume_target,
                          'ctxt', 'volume', 'src')
