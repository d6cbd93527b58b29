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

"""The sandbox's noauth middleware: who is admin, by Cinder's own policy."""

from cinder.api.middleware import auth
from cinder.policies import volume_actions
from cinder import policy
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools
import webob

from cinder_asyncmig.sandbox import noauth


class NoAuthTest(testtools.TestCase):

    def setUp(self):
        super(NoAuthTest, self).setUp()
        # Cinder's default policies, no policy file
        self.useFixture(config_fixture.Config(cfg.CONF)).conf(
            [], project='cinder', default_config_files=[])
        self.seen = []
        policy.reset()
        self.addCleanup(policy.reset)

    def _app(self, environ, start_response):
        self.seen.append(environ['cinder.context'])
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'ok']

    def _context(self, middleware, token):
        request = webob.Request.blank('/v3/%s/volumes' %
                                      token.partition(':')[2])
        request.headers['X-Auth-Token'] = token
        response = request.get_response(middleware)
        self.assertEqual(200, response.status_int)
        return self.seen[-1]

    def _can_migrate(self, ctxt):
        return policy.authorize(ctxt, volume_actions.MIGRATE_POLICY,
                                {'project_id': ctxt.project_id},
                                do_raise=False)

    def test_stock_noauth_makes_everybody_admin(self):
        # the reason for this middleware
        ctxt = self._context(auth.NoAuthMiddleware(self._app), 'demo:de01')
        self.assertTrue(ctxt.is_admin)
        self.assertTrue(self._can_migrate(ctxt))

    def test_admin_user_is_admin(self):
        middleware = noauth.NoAuthMiddleware(self._app, admin_users='admin')
        ctxt = self._context(middleware, 'admin:ad01')
        self.assertTrue(ctxt.is_admin)
        self.assertEqual('admin', ctxt.user_id)
        self.assertEqual('ad01', ctxt.project_id)
        self.assertIn('admin', ctxt.roles)
        self.assertTrue(self._can_migrate(ctxt))

    def test_other_users_are_project_members(self):
        middleware = noauth.NoAuthMiddleware(self._app, admin_users='admin')
        ctxt = self._context(middleware, 'demo:de01')
        self.assertFalse(ctxt.is_admin)
        self.assertEqual(['member', 'reader'], sorted(ctxt.roles))
        self.assertEqual('de01', ctxt.project_id)
        self.assertFalse(self._can_migrate(ctxt))

    def test_several_admins(self):
        middleware = noauth.NoAuthMiddleware(self._app,
                                             admin_users='admin nova')
        self.assertTrue(self._context(middleware, 'nova:ad01').is_admin)

    def test_token_handshake_as_stock(self):
        middleware = noauth.NoAuthMiddleware(self._app)
        request = webob.Request.blank('/v3')
        request.headers['X-Auth-User'] = 'demo'
        request.headers['X-Auth-Project-Id'] = 'de01'
        response = request.get_response(middleware)
        self.assertEqual(204, response.status_int)
        self.assertEqual('demo:de01', response.headers['X-Auth-Token'])
        self.assertEqual([], self.seen)
