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

"""Cinder's noauth middleware with admin and non-admin users, for tests.

Cinder's ``NoAuthMiddleware`` trusts the token ``user_id:project_id`` and
makes *every* request an admin request: it builds the context with
``is_admin=True``, and ``RequestContext`` then adds the ``admin`` role. No
policy file can take that back (``admin_api`` passes on ``is_admin:True``,
and the database layer skips project scoping for admin contexts), so a
sandbox on stock noauth has no non-admin user.

This middleware takes the same token from the same clients
(python-cinderclient's ``noauth`` auth type) and differs in one point:
users listed in ``admin_users`` get the ``admin`` role, everybody else
gets ``member`` and ``reader``, and ``is_admin`` is left to Cinder's own
``context_is_admin`` policy, as it is behind Keystone. A non-admin user is
then refused by Cinder's default policies exactly where a Keystone project
member is, e.g. ``os-migrate_volume`` answers 403.

The sandbox's ``api-paste.ini`` puts it in place of ``noauth`` in the
``noauth`` pipeline (``auth_strategy = noauth``), with ``admin_users`` set
in that filter's section.

It is for throwaway test deployments only, like the middleware it extends.
"""

from cinder.api.middleware import auth
from cinder.api.openstack import wsgi
import webob.dec

ADMIN_ROLES = ('admin', 'member', 'reader')
MEMBER_ROLES = ('member', 'reader')


class NoAuthMiddleware(auth.NoAuthMiddlewareBase):
    """Trust ``user:project`` tokens; only ``admin_users`` are admins.

    :param application: the next WSGI application of the pipeline.
    :param admin_users: whitespace-separated user ids that get the admin
                        role (paste passes it as a string).
    """

    def __init__(self, application, admin_users='admin'):
        super(NoAuthMiddleware, self).__init__(application)
        self.admin_users = frozenset(admin_users.split())

    def roles_of(self, user_id):
        """Return the roles a user gets.

        :param user_id: the user part of the token.
        :returns: a list of role names.
        """
        if user_id in self.admin_users:
            return list(ADMIN_ROLES)
        return list(MEMBER_ROLES)

    @webob.dec.wsgify(RequestClass=wsgi.Request)
    def __call__(self, req):
        if 'X-Auth-Token' not in req.headers:
            # the token handshake of the stock middleware
            return self.base_call(req)
        user_id, _sep, project_id = req.headers['X-Auth-Token'].partition(
            ':')
        project_id = project_id or user_id
        # no is_admin here: RequestContext asks the context_is_admin policy
        auth._set_request_context(req, user_id=user_id,
                                  project_id=project_id,
                                  roles=self.roles_of(user_id))
        return self.application
