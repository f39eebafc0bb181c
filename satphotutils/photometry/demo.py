# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The demo: a simulated field with saturated stars, measured and plotted.

``satphot demo`` runs `run_demo` and `plot_demo`; the documentation's
gallery draws the same figure.
"""

import numpy as np

__all__ = ['PIPELINE_OUTCOMES', 'plot_demo', 'run_demo']

#: What the simulated survey pipeline did to each target's bleed trail
#: (the demo table's ``pipeline`` column).
PIPELINE_OUTCOMES = {
    'ok': 'saturated; the pipeline put the trail flux back on the star',
    'misplaced': ('saturated; the pipeline put the trail flux on another '
                  'star on the trail'),
    'lost': ('saturated; the pipeline took the star for part of the trail '
             'and its flux is gone (no method can recover it)'),
    'unmatched': ('saturated; the pipeline found no catalogue star for '
                  'the trail'),
    'none': 'not saturated: nothing to correct',
}

# Stars brighter than this saturate on the simulated camera (the paper's
# g ~ 11.5).
SATURATION_ONSET = 11.5
# Half-range (mag) of the residual panel; points beyond sit on its edge.
_RESIDUAL_RANGE = 0.6


def run_demo(*, seed=1, n_targets=24):
    """
    Simulate the demo field and measure its targets.

    A full-size (2048 x 2048) frame of a random field plus ``n_targets``
    targets from g = 4 to 14 in separate columns, so that their bleed
    trails do not cross; each is measured with the bundled model and with
    a 2-px aperture.

    Parameters
    ----------
    seed : int, optional
        Random seed of the field, the targets and the frame.

    n_targets : int, optional
        Number of targets.

    Returns
    -------
    frame : `~astropy.nddata.CCDData`
        The simulated frame.

    table : `~astropy.table.QTable`
        The network's table (`SaturatedStarPhotometry`) plus
        ``true_mag``, ``saturated_true``, ``mag_ap2`` and ``mag_ap2_err``
        (the 2-px aperture) and ``pipeline`` (see
        ``satphotutils.photometry.PIPELINE_OUTCOMES``).

    Examples
    --------
    About 15 s on a laptop core:

    >>> from satphotutils.photometry import plot_demo, run_demo
    >>> frame, table = run_demo(seed=1)  # doctest: +SKIP
    >>> fig = plot_demo(frame, table, path='demo.png')  # doctest: +SKIP
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from satphotutils.simulation import (
        Camera,
        Detector,
        FrameSimulator,
        Scene,
    )

    from .core import AperturePhotometryBaseline, SaturatedStarPhotometry

    rng = np.random.default_rng(seed)
    centre = SkyCoord(120.0, -50.0, unit='deg')
    scene = Scene.random(centre, radius=3.3 * u.deg, g_max=15.0, seed=seed)
    n = n_targets
    # A full-size detector: the trail of a g = 4 star is ~1,700 rows long.
    detector = Detector()
    # Targets in separate columns, so that their bleed trails do not run
    # through each other (crossing trails are flagged in real data).
    x = np.linspace(200, 1850, n) + rng.uniform(-0.5, 0.5, n)
    y = rng.uniform(900, 1150, n)
    coords = detector.wcs(centre).pixel_to_world(x, y)
    g = np.linspace(4.0, 14.0, n)
    scene.add(coords, g, rng.uniform(0.5, 1.6, n),
              name=[f'target{i}' for i in range(n)])
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=centre)
    frame, truth = sim(scene, mjd=60000.0, seed=seed)
    truth = truth[np.char.startswith(np.asarray(truth['name'], str),
                                     'target')]
    table = SaturatedStarPhotometry()(frame, skycoord=truth['sky_coord'])
    aperture = AperturePhotometryBaseline(radius=2.0)(
        frame, skycoord=truth['sky_coord'])
    table['true_mag'] = truth['mag']
    table['saturated_true'] = truth['saturated']
    table['mag_ap2'] = aperture['mag']
    table['mag_ap2_err'] = aperture['mag_err']
    table['pipeline'] = truth['outcome']
    return frame, table


def plot_demo(frame, table, *, path=None, fig=None):
    """
    Plot the demo: the frame, one saturated star and the residuals.

    Left, the whole frame (asinh stretch) with the targets circled and
    the saturated pixels in orange; middle, the brightest target with
    its bleed trail; right, measured minus true magnitude against the
    true magnitude for the network and the 2-px aperture, with error
    bars. Points beyond the right panel's range sit on its edge as
    triangles labelled with their value; flagged targets and targets
    whose trail flux the simulated pipeline lost are marked.

    Parameters
    ----------
    frame : `~astropy.nddata.CCDData`
        The frame; its saturated pixels are those at or above the
        saturation level of ``table.meta['frame']``, else of its header
        (``SATURATE`` or ``SATLEVEL``).

    table : `~astropy.table.QTable`
        The table of `run_demo`.

    path : path-like, optional
        Write the figure to this PNG.

    fig : `~matplotlib.figure.Figure`, optional
        An empty figure to draw on, e.g. ``plt.figure()`` to show it
        with pyplot; by default a new figure that pyplot does not manage.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`

    Examples
    --------
    See `run_demo`; the documentation's gallery shows the figure.

    >>> from satphotutils.photometry import plot_demo, run_demo
    >>> fig = plot_demo(*run_demo(seed=1))  # doctest: +SKIP
    """
    from satphotutils.utils._plotting import empty_figure

    fig = empty_figure(fig, (16, 6))
    grid = fig.add_gridspec(1, 3, width_ratios=[1.0, 0.55, 1.7])
    ax_frame = fig.add_subplot(grid[0])
    ax_zoom = fig.add_subplot(grid[1])
    ax_res = fig.add_subplot(grid[2])
    image = _frame_panels(fig, ax_frame, ax_zoom, frame, table)
    bar = fig.colorbar(image, ax=ax_zoom, location='right', shrink=0.9,
                       label='counts above sky [ADU], asinh stretch')
    bar.set_ticks(_round_ticks(image.norm.vmax))
    _residual_panel(ax_res, table)
    if path is not None:
        from satphotutils.utils.io import atomic_output

        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=100)
    return fig


def _frame_panels(fig, ax, zoom, frame, table):
    from astropy.visualization import simple_norm
    from matplotlib.colors import ListedColormap
    from scipy import ndimage

    data = np.asarray(frame.data, dtype=float)
    finite = data[np.isfinite(data)]
    sky = np.median(finite)
    noise = np.subtract(*np.percentile(finite, [84, 16])) / 2
    norm = simple_norm(data - sky, stretch='asinh', vmin=-2 * noise,
                       vmax=300 * noise)
    image = ax.imshow(data - sky, origin='lower', cmap='gray_r', norm=norm,
                      interpolation='antialiased')
    # The level photometry used, wherever it came from (header keyword,
    # its fallback or the plateau).
    level = table.meta.get('frame', {}).get('saturation_level')
    if level is None:
        from satphotutils.frames import frame_info

        level = frame_info(frame).saturation_level
    saturated = np.zeros(data.shape, bool) if level is None else \
        np.nan_to_num(data, nan=0.0) >= level
    # At the frame's scale one saturated pixel is far below a screen
    # pixel: grown, the trails show.
    grown = ndimage.binary_dilation(saturated, iterations=2)
    orange = ListedColormap(['tab:orange'])
    ax.imshow(np.where(grown, 1.0, np.nan), origin='lower', cmap=orange,
              interpolation='nearest', alpha=0.8)
    x = np.asarray(table['x_center'])
    y = np.asarray(table['y_center'])
    flagged = np.asarray(table['flags']) != 0
    ax.scatter(x[~flagged], y[~flagged], s=90, facecolor='none',
               edgecolor='tab:blue', lw=1.2, label='target')
    if flagged.any():
        ax.scatter(x[flagged], y[flagged], s=90, facecolor='none',
                   edgecolor='tab:red', lw=1.2, label='target, flagged')
    if saturated.any():
        ax.plot([], [], 's', color='tab:orange',
                label=f'saturated pixel (>= {level:.0f} ADU)')
    ax.set_xlabel('x [pixel]')
    ax.set_ylabel('y [pixel]')
    ax.set_title('simulated 2048 x 2048 frame')
    ax.legend(loc='upper right', fontsize='small', framealpha=0.9)
    # The brightest target, close up: its core and trail.
    i = int(np.nanargmin(np.asarray(table['true_mag'], float)))
    xc, yc = round(x[i]), round(y[i])
    half_x = half_y = 20
    box = (max(xc - half_x, 0), min(xc + half_x, data.shape[1]),
           max(yc - half_y, 0), min(yc + half_y, data.shape[0]))
    cut = (data - sky)[box[2]:box[3], box[0]:box[1]]
    extent = (box[0] - 0.5, box[1] - 0.5, box[2] - 0.5, box[3] - 0.5)
    zoom.imshow(cut, origin='lower', cmap='gray_r', norm=norm,
                extent=extent, interpolation='nearest')
    sat_cut = saturated[box[2]:box[3], box[0]:box[1]]
    if sat_cut.any():
        zoom.contour(sat_cut, levels=[0.5], colors='tab:orange',
                     linewidths=0.8, extent=extent, origin='lower')
    zoom.scatter([x[i]], [y[i]], s=300, facecolor='none',
                 edgecolor='tab:blue', lw=1.2)
    zoom.set_title(f'target {table["id"][i]} (g = '
                   f'{float(np.asarray(table["true_mag"])[i]):.1f})\n'
                   'saturated core (orange)', fontsize='medium')
    zoom.set_xlabel('x [pixel]')
    # The survey pipeline has already put the bleed trail's charge back
    # on the star: what remains of saturation is the flat core.
    zoom.text(0.03, 0.03, 'trail charge put back\nby the survey pipeline',
              transform=zoom.transAxes, fontsize='x-small', va='bottom')
    ax.add_patch(_rectangle(box))
    return image


def _rectangle(box):
    from matplotlib.patches import Rectangle

    return Rectangle((box[0], box[2]), box[1] - box[0], box[3] - box[2],
                     fill=False, edgecolor='tab:orange', lw=1.0)


def _residual_panel(ax, table):
    true = np.asarray(getattr(table['true_mag'], 'value', table['true_mag']),
                      float)
    net = np.asarray(table['mag'].value, float) - true
    net_err = np.asarray(table['mag_err'].value, float)
    ap = np.asarray(table['mag_ap2'].value, float) - true
    ap_err = np.asarray(table['mag_ap2_err'].value, float)
    # The aperture misses the light beyond 2 px: a constant a survey
    # calibrates away, taken out here as its median.
    ap_offset = float(np.nanmedian(ap))
    ap = ap - ap_offset
    flagged = np.asarray(table['flags']) != 0
    lost = ~np.isin(np.asarray(table['pipeline'], str), ['ok', 'none'])
    lim = _RESIDUAL_RANGE
    ax.axhline(0, color='k', lw=0.5)
    ax.axvline(SATURATION_ONSET, color='k', lw=0.7, ls=':')
    ax.text(SATURATION_ONSET, -0.97 * lim,
            f'saturated (g < {SATURATION_ONSET})  |  unsaturated  ',
            ha='right', va='bottom', fontsize='small')
    ax.axvspan(true.min() - 1, SATURATION_ONSET, color='tab:orange',
               alpha=0.07, lw=0)
    _points(ax, true, ap, ap_err, lim, marker='s', colour='0.45',
            label=(f'2-px aperture minus its median offset '
                   f'({ap_offset:+.2f} mag: the light beyond 2 px)'),
            hollow=np.zeros(len(true), bool))
    _points(ax, true, net, net_err, lim, marker='o', colour='tab:red',
            label='satphotutils network', hollow=flagged)
    if flagged.any():
        ax.plot([], [], 'o', mfc='none', color='tab:red',
                label='network, flagged target')
    if lost.any():
        ax.plot(true[lost], np.clip(net[lost], -lim, lim), 'x', ms=11,
                color='k', label='trail flux lost by the survey pipeline')
    clipped = (np.abs(net) > lim) | (np.abs(ap) > lim)
    if clipped.any():
        ax.plot([], [], '^', color='0.3',
                label=f'beyond +-{lim} mag: on the edge, value given')
    ax.set_xlim(true.min() - 0.4, true.max() + 0.4)
    ax.set_ylim(-lim * 1.05, lim * 1.05)
    ax.set_xlabel('true g [mag]')
    ax.set_ylabel('measured - true [mag]')
    ax.set_title('each target: measured minus true magnitude')
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.13), ncol=2,
              fontsize='small', frameon=False)


def _round_ticks(vmax):
    # Few ticks, at round numbers: an asinh scale crowds the top ones.
    top = 10 ** np.floor(np.log10(vmax))
    return [0, top / 10, top]


def _points(ax, x, dy, err, lim, *, marker, colour, label, hollow):
    inside = np.isfinite(dy) & (np.abs(dy) <= lim)
    for sel, face, lab in ((inside & ~hollow, colour, label),
                           (inside & hollow, 'none', None)):
        if sel.any():
            ax.errorbar(x[sel], dy[sel], np.nan_to_num(err[sel]),
                        fmt=marker, ms=5, color=colour, mfc=face, lw=0.8,
                        capsize=0, label=lab)
    beyond = np.isfinite(dy) & ~inside
    for xi, di in zip(x[beyond], dy[beyond], strict=True):
        edge = np.sign(di) * lim
        ax.plot(xi, edge, '^' if di > 0 else 'v', color=colour, ms=8)
        ax.annotate(f'{di:+.1f}', (xi, edge), xytext=(4, -12 if di > 0
                                                       else 4),
                    textcoords='offset points', fontsize='small',
                    color=colour)
