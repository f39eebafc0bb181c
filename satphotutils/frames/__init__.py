# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Frames: the one place where FITS images and their headers are read.

`HeaderKeys` names every header keyword the package reads, `FrameInfo`
holds what a frame's header says (each value `None` when unknown, never
a silent default), `read_frame` opens a frame and `list_frames` finds
them; `frame_fwhm`, `frame_psf` and `saturation_level` measure what the
pixels say about the camera, and `bleed_trails` whether its pipeline left the
bleed trails in place; `find_stars` and `register_stars` tie a frame without
a WCS to a reference frame. Photometry, the stamp builder and the light-curve
pipeline all go through these.
"""

from satphotutils.utils._lazy import lazy_namespace

# Public names and their modules, imported on first use.
__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    'descriptors': ['frame_background', 'frame_fwhm', 'frame_psf',
                    'gaussian_fit_fwhm',
                    'saturation_level',
                    'stamp_fwhm'],
    'info': ['FrameInfo', 'InvalidHeaderError', 'frame_info'],
    'keys': ['HeaderKeys'],
    'listing': ['FRAME_PATTERNS', 'list_frames'],
    'reader': ['read_frame', 'read_frame_data', 'read_frame_info'],
    'registration': ['RegistrationError', 'SimilarityTransform',
                     'find_stars', 'register_stars'],
    'trails': ['bleed_trails', 'runs_along'],
})
