# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
A night of one small telescope: frames that drift and rotate, no WCS.

The frames of `simulate_field` are resampled onto a reference grid and
carry its WCS. A small or student telescope's night is different: the
field drifts by many pixels and rotates a little (imperfect polar
alignment) from frame to frame, nobody plate-solves the frames, and the
header has the start of the exposure and its length, nothing more.
`simulate_night` writes such a night with the truth needed to check
what is done with it.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from satphotutils.utils._parameters import as_integer, as_positive
from satphotutils.utils.io import atomic_output

from .frames import FrameSimulator, _write_field_tables

__all__ = ['simulate_night']

# Header keywords a camera that nobody calibrated does not write: the
# survey zero point and transparency, the reference-grid statement, the
# mid-exposure time, and the simulation's damage truth.
_NOT_WRITTEN = ('ZP', 'TRANSP', 'REFGRID', 'DATE-AVG', 'MJD-AVG', 'MJD-OBS',
                'DAMAGED')


def _frame_wcs(reference, rotation, shift):
    """Return the reference WCS rotated about its centre and shifted."""
    wcs = reference.deepcopy()
    theta = math.radians(rotation)
    rot = np.array([[math.cos(theta), -math.sin(theta)],
                    [math.sin(theta), math.cos(theta)]])
    # Frame pixels p' = R (p - c) + c + d, so the sky sees CD R^-1 about
    # the reference pixel moved by d.
    wcs.wcs.cd = reference.wcs.cd @ rot.T
    wcs.wcs.crpix = reference.wcs.crpix + np.asarray(shift, dtype=float)
    return wcs


def simulate_night(directory, scene, simulator, *, n_frames=142,
                   start_mjd=60000.1, exptime=60.0, gap=10.0,
                   drift=(150.0, -60.0), rotation=1.0, jitter=1.0,
                   conditions=None, clouds=0.0, seed=None,
                   overwrite=False, progress=False):
    """
    Simulate one night of one camera without a WCS and write it to disk.

    Frame ``k`` of ``n_frames`` is the camera's pointing drifted by
    ``k / (n_frames - 1)`` of ``drift`` (plus a random guiding error of
    ``jitter`` pixels rms) and rotated by that fraction of ``rotation``
    about the detector centre; the first frame is the reference. All
    frames share the night's conditions up to small changes of seeing,
    sky and transparency, as `simulate_field` draws them. The FITS files
    (``night_{k:04d}.fits``) have no WCS and a camera's header: the start
    of the exposure (``DATE-OBS``), ``EXPTIME``, ``SATURATE``, ``GAIN``,
    ``RDNOISE``, ``CAMERA``, ``FILTER``, the sky and the FWHM; no zero
    point.

    Parameters
    ----------
    directory : str or `~pathlib.Path`
        Output directory (created if needed).

    scene : `~satphotutils.simulation.Scene`
        The stars (cover the detector and the drift).

    simulator : `~satphotutils.simulation.FrameSimulator`
        The camera and its reduction; its pointing and rotation are those
        of the first frame.

    n_frames : int, optional
        Frames of the night.

    start_mjd : float, optional
        Start of the first exposure.

    exptime : float, optional
        Exposure time (seconds).

    gap : float, optional
        Seconds between the end of one exposure and the start of the
        next.

    drift : tuple of float, optional
        ``(dx, dy)`` pixels the stars move on the detector over the night.

    rotation : float, optional
        Degrees the field turns over the night.

    jitter : float, optional
        Rms guiding error of each frame (pixels, per axis).

    conditions : dict, optional
        `~satphotutils.simulation.ExposureConditions` fields of the
        night, about which each frame's seeing, sky and transparency
        vary: e.g. ``{'fwhm': 3.0, 'sky': 120.0}``, or ``'psf_family'``.
        The rest is drawn by the simulator (a survey's seeing of
        1.5-2 px, too sharp for most small telescopes).

    clouds : float, optional
        Rms (mag) of each frame's extinction by passing cloud, on top of
        the night's transparency: the light every star of a frame loses
        alike, which differential photometry takes out.

    seed : int, optional
        Random seed.

    overwrite : bool, optional
        Whether to replace existing files.

    progress : bool, optional
        Show a tqdm progress bar.

    Returns
    -------
    frames : `~astropy.table.QTable`
        One row per frame, as written to ``frames.ecsv``: ``file``,
        ``mjd`` (mid-exposure), ``fwhm``, ``transparency`` and the true
        transformation from reference to frame pixels as
        `~satphotutils.frames.SimilarityTransform` has it: ``rotation``
        (degrees), ``x_shift``, ``y_shift``. ``truth.ecsv`` holds the
        frames' truth (as `~satphotutils.simulation.FrameSimulator`
        returns it) with ``file`` and the stars' reference-frame
        positions ``x_ref``, ``y_ref``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from astropy import units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from astropy.io import fits
    >>> from satphotutils.simulation import (Camera, Detector,
    ...     FrameSimulator, Scene, simulate_night)
    >>> centre = SkyCoord(30.0, -10.0, unit='deg')
    >>> scene = Scene.random(centre, radius=0.2 * u.deg, g_max=15, seed=1)
    >>> sim = FrameSimulator(camera=Camera(detector=Detector(shape=(64, 64))),
    ...                      pointing=centre)
    >>> out = Path(tempfile.mkdtemp())
    >>> frames = simulate_night(out, scene, sim, n_frames=3, seed=1)
    >>> header = fits.getheader(out / frames['file'][2])
    >>> 'CTYPE1' in header, header['EXPTIME']
    (False, 60.0)
    >>> frames['rotation'].tolist()
    [0.0, 0.5, 1.0]
    """
    from tqdm.auto import tqdm

    from satphotutils.frames.registration import SimilarityTransform

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_frames = as_integer(n_frames, 'n_frames', minimum=1)
    exptime = as_positive(exptime, 'exptime')
    rng = np.random.default_rng(seed)
    reference = simulator.wcs
    centre = reference.wcs.crpix - 1.0
    night = simulator.draw_conditions(start_mjd, rng)
    if conditions:
        fields = {f.name for f in dataclasses.fields(night)}
        unknown = sorted(set(conditions) - fields)
        if unknown:
            msg = (f'conditions has no field {", ".join(unknown)}; the '
                   f'fields are those of ExposureConditions: '
                   f'{", ".join(sorted(fields))}')
            raise ValueError(msg)
        night = dataclasses.replace(night, **conditions)
    rows, truths = [], []
    for k in tqdm(range(n_frames), unit='frame', disable=not progress):
        fraction = k / max(n_frames - 1, 1)
        angle = rotation * fraction
        shift = np.asarray(drift, dtype=float) * fraction
        if k:
            shift = shift + rng.normal(0.0, jitter, 2)
        start = start_mjd + k * (exptime + gap) / 86400.0
        cond = dataclasses.replace(
            night, mjd=start + exptime / 2 / 86400.0, exptime=exptime,
            fwhm=float(night.fwhm * np.exp(rng.normal(0, 0.03))),
            transparency=float(night.transparency * 10 ** (0.4 * abs(
                rng.normal(0, np.hypot(0.005, clouds))))),
            sky=float(night.sky * np.exp(rng.normal(0, 0.02))),
            dither=(0.0, 0.0))
        frame_sim = _Pointed(simulator, _frame_wcs(reference, angle, shift))
        frame, truth = frame_sim(scene, conditions=cond, seed=rng)
        header = fits.Header()
        for card in frame.meta.cards:
            if card.keyword not in _NOT_WRITTEN:
                header.append(card)
        name = f'night_{k:04d}.fits'
        data = np.where(np.isfinite(frame.data), frame.data, 0.0)
        with atomic_output(directory / name, overwrite=overwrite) as tmp:
            fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(
                tmp)
        # Reference pixel p falls on the frame at R (p - c) + c + d.
        true = SimilarityTransform(rotation=angle, x_shift=0.0, y_shift=0.0)
        cx, cy = true(*centre)
        x_shift, y_shift = centre + shift - np.array([cx, cy])
        true = dataclasses.replace(true, x_shift=float(x_shift),
                                   y_shift=float(y_shift))
        truth['file'] = np.full(len(truth), name)
        truth['x_ref'], truth['y_ref'] = true.inverse(truth['x'],
                                                      truth['y'])
        truth.meta.clear()
        truths.append(truth)
        rows.append({'file': name, 'mjd': cond.mjd, 'fwhm': cond.fwhm,
                     'transparency': cond.transparency,
                     'rotation': float(angle), 'x_shift': true.x_shift,
                     'y_shift': true.y_shift})
    return _write_field_tables(directory, rows, truths, overwrite=overwrite)


class _Pointed(FrameSimulator):
    """A `FrameSimulator` with another pointing: its WCS replaced."""

    def __init__(self, simulator, wcs):
        self.__dict__.update(simulator.__dict__)
        self.wcs = wcs
