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

"""The policies of the async migration API, admin-only by default.

Registered in cinder-api's enforcer at the first call
(:func:`authorize`), so that ``policy.yaml`` overrides them as it does
Cinder's own; ``oslopolicy-sample-generator --namespace cinder_asyncmig``
lists them (the ``oslo.policy.policies`` entry point).
"""

from cinder.policies import base
from cinder import policy
from oslo_policy import policy as oslo_policy

GET_ALL_POLICY = 'async_migration:get_all'
GET_POLICY = 'async_migration:get'
PROGRESS_ATTRIBUTE_POLICY = 'async_migration:progress_attribute'
SET_POLICY = 'async_migration:set'
PAUSE_POLICY = 'async_migration:pause'
RESUME_POLICY = 'async_migration:resume'
ABORT_POLICY = 'async_migration:abort'

_PATH = '/async-migrations'

_ACTION = [{'method': 'POST', 'path': '/volumes/{volume_id}/action'}]


def _admin_only(name, description, operations):
    return oslo_policy.DocumentedRuleDefault(
        name=name, check_str=base.RULE_ADMIN_API, description=description,
        operations=operations)


_RULES = [
    _admin_only(GET_ALL_POLICY, 'List the asynchronous volume migrations.',
                [{'method': 'GET', 'path': _PATH}]),
    _admin_only(GET_POLICY, 'Show the asynchronous migration of a volume.',
                [{'method': 'GET', 'path': _PATH + '/{volume_id}'}]),
    _admin_only(PROGRESS_ATTRIBUTE_POLICY,
                'Show the progress of an asynchronous migration as the '
                'migration_progress attribute of a volume.',
                [{'method': 'GET', 'path': '/volumes/{volume_id}'},
                 {'method': 'GET', 'path': '/volumes/detail'}]),
    _admin_only(SET_POLICY, 'Set the cap of a volume\'s asynchronous '
                'migration (os-async-migration-set).', _ACTION),
    _admin_only(PAUSE_POLICY, 'Pause the copy of a volume\'s asynchronous '
                'migration (os-async-migration-pause).', _ACTION),
    _admin_only(RESUME_POLICY, 'Resume the paused copy of a volume\'s '
                'asynchronous migration (os-async-migration-resume).',
                _ACTION),
    _admin_only(ABORT_POLICY, 'Abort the asynchronous migration of a '
                'volume, rolling it back to its source '
                '(os-async-migration-abort).', _ACTION),
]


def list_rules():
    return _RULES


def authorize(context, action, fatal=True):
    """``context.authorize(action)``, the rules registered first.

    :returns: False when refused and not ``fatal``.
    """
    _register()
    return context.authorize(action, fatal=fatal)


def _register():
    """Register the rules in cinder-api's enforcer, once.

    Not when the extension loads: the enforcer reads the policy file
    once the configuration is parsed.
    """
    policy.init()
    # cinder.policy has no public way to add rules to the enforcer it
    # made; its get_enforcer() parses the command line again
    enforcer = policy._ENFORCER
    for rule in _RULES:
        if rule.name not in enforcer.registered_rules:
            enforcer.register_default(rule)
