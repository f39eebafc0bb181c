# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The figure a plotting function draws on."""

__all__ = []


def empty_figure(fig, figsize):
    """
    Return ``fig`` sized and laid out, or a new figure if it is `None`.

    A new figure is a bare `~matplotlib.figure.Figure`, not one of
    pyplot's: the caller's backend and open figures are left alone, it is
    safe in worker threads and nothing has to be closed. A caller who
    wants pyplot (a notebook, Sphinx's plot directive) passes
    ``plt.figure()``.
    """
    from matplotlib.figure import Figure

    if fig is None:
        return Figure(figsize=figsize, layout='constrained')
    if not isinstance(fig, Figure):
        msg = ('fig must be a matplotlib Figure (e.g. plt.figure()), got '
               f'{type(fig).__name__}')
        raise TypeError(msg)
    if fig.axes:
        msg = 'fig must be an empty figure; it already has axes'
        raise ValueError(msg)
    fig.set_size_inches(figsize)
    fig.set_layout_engine('constrained')
    return fig
