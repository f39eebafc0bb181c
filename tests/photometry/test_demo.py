import numpy as np
from astropy import units as u
from astropy.nddata import CCDData
from astropy.table import QTable

from satphotutils.photometry import PIPELINE_OUTCOMES, plot_demo


def _demo_inputs(flags):
    # A frame with one saturated star and a table of four targets; the
    # 2-px aperture misses one target by +4.9 mag (the demo's worst).
    data = np.full((300, 300), 100.0)
    data[148:153, 148:153] = 60000.0
    frame = CCDData(data, unit='adu', meta={'SATURATE': 60000.0})
    true = np.array([4.0, 7.0, 10.0, 13.0])
    table = QTable({'id': [1, 2, 3, 4], 'x_center': [150.0, 60, 200, 250],
                    'y_center': [150.0, 60, 200, 250],
                    'flags': np.asarray(flags, np.int64),
                    'true_mag': true * u.mag,
                    'mag': (true + np.array([0.01, -0.02, 0.0, 0.01])) * u.mag,
                    'mag_err': [0.05, 0.04, 0.03, 0.03] * u.mag,
                    'mag_ap2': (true + np.array([0.3, 5.2, 0.3, 0.3])) * u.mag,
                    'mag_ap2_err': [0.01, 0.01, 0.01, 0.02] * u.mag,
                    'pipeline': ['ok', 'ok', 'lost', 'none']})
    return frame, table


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_demo_figure_labels_what_it_shows(tmp_path):
    frame, table = _demo_inputs([0, 0, 0, 0])
    fig = plot_demo(frame, table, path=tmp_path / 'demo.png')
    assert (tmp_path / 'demo.png').stat().st_size > 0
    ax_frame, ax_res = fig.axes[0], fig.axes[2]
    assert ax_frame.get_xlabel() == 'x [pixel]'
    assert ax_frame.get_ylabel() == 'y [pixel]'
    # A colour bar says what the grey scale is.
    assert any('asinh' in a.get_ylabel() for a in fig.axes[3:])
    # Nothing is flagged: no "flagged" entry.
    assert not any('flagged' in t for t in _legend(ax_frame))
    assert any('saturated pixel' in t for t in _legend(ax_frame))
    legend = _legend(ax_res)
    # The aperture's offset is said, as is what it is.
    assert any('median offset (+0.30 mag' in t for t in legend)
    assert any('lost by the survey pipeline' in t for t in legend)
    # The +4.9-mag failure is on the edge, with its value.
    assert '+4.9' in [t.get_text() for t in ax_res.texts]
    assert any(t.startswith('beyond +-0.6 mag') for t in legend)
    assert any('saturated (g < 11.5)' in t.get_text() for t in ax_res.texts)
    # Network points carry error bars.
    assert ax_res.containers


def test_demo_figure_marks_flagged_targets():
    frame, table = _demo_inputs([0, 2**31, 0, 0])
    fig = plot_demo(frame, table)
    assert 'target, flagged' in _legend(fig.axes[0])
    assert 'network, flagged target' in _legend(fig.axes[2])


def test_every_pipeline_outcome_is_explained():
    from satphotutils.simulation import pipeline

    outcomes = {pipeline.OK, pipeline.MISPLACED, pipeline.LOST,
                pipeline.UNMATCHED, 'none'}
    assert outcomes == set(PIPELINE_OUTCOMES)
