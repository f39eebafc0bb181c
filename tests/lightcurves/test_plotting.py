import numpy as np
from astropy.time import Time
from astropy.timeseries import TimeSeries

from satphotutils.lightcurves import plot_lightcurve
from satphotutils.utils.flags import SATPHOT_FLAGS


def _lightcurve(name='cep', n=60):
    t = np.arange(n, dtype=float)
    ts = TimeSeries(time=Time(59000 + t, format='mjd'))
    ts['mag'] = 7.5 + 0.4 * np.sin(2 * np.pi * t / 5.3)
    ts['mag_err'] = np.full(n, 0.02)
    ts['flags'] = np.zeros(n, int)
    ts.meta['name'] = name
    return ts


def _texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_lightcurve_plot_explains_edge_points_and_titles():
    lc = _lightcurve()
    lc['flags'][3] = SATPHOT_FLAGS.DAMAGED_CORE
    # One wild epoch: it must not squash the scale, and must show.
    lc['mag'][20] = 12.0
    base = _lightcurve()
    base.meta['config'] = {'photometry': 'AperturePhotometryBaseline'}
    fig = plot_lightcurve(lc, baseline=base)
    ax = fig.axes[0]
    assert ax.get_title() == 'satphotutils network'
    assert fig.axes[1].get_title() == 'baseline: aperture photometry'
    assert fig.get_suptitle() == 'cep: light curve'
    # The flagged and the off-scale epoch: on the edge, in the legend.
    assert 'flagged or off scale, at the edge (2)' in _texts(ax)
    assert 'epoch (58)' in _texts(ax)
    bottom, top = ax.get_ylim()
    assert bottom < 8.5
    assert top > 7.0
    fig = plot_lightcurve(lc, period=5.3)
    assert fig.get_suptitle() == 'cep: folded on P = 5.3 d'


def test_lightcurve_without_usable_epoch_says_so(tmp_path):
    lc = _lightcurve('lost')
    lc['flags'][:] = SATPHOT_FLAGS.DAMAGED_CORE
    fig = plot_lightcurve(lc, path=tmp_path / 'lost.png')
    assert (tmp_path / 'lost.png').stat().st_size > 0
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith('no usable epoch: 60 epochs') for t in texts)
    # The scale is the values', not an arbitrary 0 to 1.
    bottom, top = fig.axes[0].get_ylim()
    assert 7.0 < top < bottom < 8.1


def test_lightcurve_plot_draws_on_a_given_pyplot_figure():
    # Sphinx's plot directive and notebooks show pyplot's figures only.
    import matplotlib.pyplot as plt
    import pytest

    fig = plt.figure()
    try:
        out = plot_lightcurve(_lightcurve(), period=5.3, fig=fig)
        assert out is fig
        assert plt.fignum_exists(fig.number)
        assert len(fig.axes) == 1
        assert tuple(fig.get_size_inches()) == (5.5, 3.8)
        with pytest.raises(ValueError, match='fig must be an empty figure'):
            plot_lightcurve(_lightcurve(), fig=fig)
    finally:
        plt.close(fig)
    with pytest.raises(TypeError, match='fig must be a matplotlib Figure'):
        plot_lightcurve(_lightcurve(), fig='figure')
    # By default pyplot does not see the figure (threads, no leaks).
    before = plt.get_fignums()
    plot_lightcurve(_lightcurve())
    assert plt.get_fignums() == before
