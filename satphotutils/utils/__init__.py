# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Utilities shared by the satphotutils subpackages."""

from .exceptions import *
from .io import *
from .stats import *
