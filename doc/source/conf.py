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

"""Sphinx configuration of the cinder-asyncmig documentation."""

import warnings

# show-options imports the plugin's options, and with them Cinder, which
# imports eventlet: its deprecation warning is not the documentation's
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

# -- General configuration ----------------------------------------------

extensions = [
    'openstackdocstheme',
    # .. show-options:: the plugin's options (oslo.config.opts)
    'oslo_config.sphinxext',
    # .. autoprogram-cliff:: the openstack volume migration commands
    'cliff.sphinxext',
]

# the commands as typed, after "openstack"; the output options every
# OpenStackClient listing or show command has are left to its own docs
autoprogram_cliff_application = 'openstack'
autoprogram_cliff_ignored = [
    '--help', '--format', '--column', '--max-width', '--fit-width',
    '--print-empty', '--noindent', '--prefix', '--quote', '--sort-column',
    '--sort-ascending', '--sort-descending']

source_suffix = '.rst'
master_doc = 'index'

project = 'cinder-asyncmig'
copyright = 'cinder-asyncmig developers'

exclude_patterns = ['api/samples']

pygments_style = 'native'

# -- openstackdocstheme -------------------------------------------------

openstackdocs_repo_name = 'x/cinder-asyncmig'
openstackdocs_auto_name = False
openstackdocs_use_storyboard = False
openstackdocs_pdf_link = False

# -- Options for HTML output --------------------------------------------

html_theme = 'openstackdocs'
html_static_path = []
