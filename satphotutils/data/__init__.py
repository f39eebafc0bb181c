# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Files shipped with satphotutils: the default model and example data.

The example files let the tutorials and the gallery run on an installed
package, without a source tree or a network connection:

* ``sp2web_352187470767.csv`` -- the real ASAS-SN Sky Patrol v2 web
  export of Sky Patrol ID 352187470767 (Gaia DR2 5332048241235589504),
  V and g from five cameras, as downloaded (calderlen/malca
  ``input/skypatrol2/352187470767-light-curves.csv``).
"""

from pathlib import Path

from satphotutils.utils.exceptions import SatphotutilsError

__all__ = ['example_path']


def example_path(name):
    """
    Return the path of an example data file shipped with the package.

    Parameters
    ----------
    name : str
        The file name, e.g. ``'sp2web_352187470767.csv'``.

    Returns
    -------
    path : `~pathlib.Path`

    Raises
    ------
    SatphotutilsError
        If there is no such example; the message lists the ones there are.

    Examples
    --------
    >>> from satphotutils.data import example_path
    >>> example_path('sp2web_352187470767.csv').name
    'sp2web_352187470767.csv'
    """
    # The package's own directory: the examples are package data, so a
    # pip-installed package has them at the same place.
    examples = Path(__file__).parent / 'examples'
    path = examples / str(name)
    if path.name != str(name) or not path.is_file():
        known = sorted(p.name for p in examples.glob('*') if p.is_file())
        msg = (f'no example file {name!r} in satphotutils.data; the '
               f'examples are: {", ".join(known) or "none"}')
        raise SatphotutilsError(msg)
    return path
