# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Files shipped with satphotutils (the default model, small tables)."""
