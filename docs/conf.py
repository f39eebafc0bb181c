# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Sphinx configuration for the satphotutils documentation."""

import sys
from datetime import UTC, datetime
from importlib.metadata import version as _version

try:
    from sphinx_astropy.conf.v3 import *
except ImportError:
    print('ERROR: the documentation requires the sphinx-astropy package '
          'with its confv3 extra; install it with: '
          'pip install -c requirements/cpu.txt -e ".[docs]"')
    sys.exit(1)

project = 'satphotutils'
author = 'satphotutils developers'
copyright = f'2026-{datetime.now(UTC).year}, {author}'
release = _version(project)
version = '.'.join(release.split('.')[:2])

extensions += ['sphinxarg.ext']

exclude_patterns += ['_build', '**.ipynb_checkpoints']

intersphinx_mapping.update({
    'photutils': ('https://photutils.readthedocs.io/en/stable/', None),
    'ccdproc': ('https://ccdproc.readthedocs.io/en/stable/', None),
    'celerite2': ('https://celerite2.readthedocs.io/en/latest/', None),
    'torch': ('https://docs.pytorch.org/docs/stable/', None),
})

# Nitpicky: every cross-reference must resolve. Built offline (CI has no
# network, so intersphinx is disabled), references into other packages'
# documentation cannot resolve; they are excluded then, and only then, so
# that our own references are still checked.
nitpicky = True
_EXTERNAL = (r'(numpy|astropy|pathlib|matplotlib|ccdproc|astroquery|'
             r'specutils|distributed|dask|celerite2|torch|photutils|scipy|'
             r'speclite|safetensors|collections)(\..*)?')


def _ignore_external_when_offline(app, config):
    if config.disable_intersphinx:
        config.nitpick_ignore_regex.extend(
            [(r'py:.*', _EXTERNAL)])


def setup(app):
    app.connect('config-inited', _ignore_external_when_offline)


# Turns the [#N] references in CHANGES.rst into links.
github_issues_url = 'https://github.com/satphotutils/satphotutils/issues/'

html_title = f'{project} v{release}'
html_theme_options = {
    'github_url': 'https://github.com/satphotutils/satphotutils',
}
html_static_path = []
htmlhelp_basename = project + 'doc'

# Plots in the docs are made from code when the docs are built.
plot_include_source = True
plot_html_show_source_link = False
plot_formats = [('png', 100)]
