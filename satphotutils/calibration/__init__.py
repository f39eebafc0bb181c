# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Gaia corrections and transformations, expected counts and crowding.

Stage 2 of the pipeline (simulate, *calibrate*, stamps, network,
photometry, light curves, intercalibration).
"""

from satphotutils.utils._lazy import lazy_namespace

# Public names and their modules, imported on first use.
__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    'catalog': [
        'GAIA_COLUMNS', 'GaiaArchive', 'LocalGaiaCatalog',
        'sample_per_magnitude_bin', 'select_non_variable'],
    'counts': [
        'counts_to_magnitude', 'crowded_log_counts', 'expected_log_counts'],
    'crowding': [
        'blended_flux_ratio', 'gaia_crowding', 'neighbour_flux',
        'stellar_background'],
    'gaia': [
        'GAIA_RELATIONS', 'GaiaRelation', 'gaia_saturation_correction',
        'gaia_to_johnson_v', 'gaia_to_sdss_g', 'gaia_to_sdss_i',
        'gaia_to_sdss_r'],
    'labels': [
        'training_labels'],
    'synthetic': [
        'BANDPASSES', 'synthetic_magnitude'],
    'zeropoint': [
        'FrameZeropoint', 'frame_zeropoint'],
})
