# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The stamp table: postage stamps of targets, the data interchange format.

Stage 3 of the pipeline (simulate, calibrate, *stamps*, network,
photometry, light curves, intercalibration).
"""

from satphotutils.utils._lazy import lazy_namespace

# Public names and their modules, imported on first use.
__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    'apertures': [
        'ApertureSums', 'PixelPhaseCorrection', 'aperture_sums',
        'center_sums', 'circle_index', 'circle_mask', 'clipped_medians',
        'phase_terms_matter', 'stamp_aperture_photometry'],
    'builder': [
        'BuildReport', 'StampBuilder'],
    'calibrate': [
        'catalogue_zeropoint'],
    'table': [
        'REQUIRED_COLUMNS', 'STAMP_FORMAT_VERSION', 'StampTableWriter',
        'iter_stamp_table', 'read_stamp_table', 'stamp_shape',
        'stamp_table_columns', 'stamp_table_shape'],
    'cutout': [
        'cut_stamps'],
})
