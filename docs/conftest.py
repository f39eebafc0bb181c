# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""pytest configuration of the documentation's doctests."""

# The figure scripts of the plot directive run when the documentation is
# built; imported for doctests they would draw every figure again.
collect_ignore = ['plots']
