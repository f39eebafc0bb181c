# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The neural network: preprocessing, model, training and model files.

Stage 4 of the pipeline (simulate, calibrate, stamps, *network*,
photometry, light curves, intercalibration).
"""

from satphotutils.utils._lazy import lazy_namespace

# Public names and their modules, imported on first use (torch is slow to
# import, and only these modules need it).
__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    'dataset': [
        'camera_codes', 'load_features', 'split_by_star'],
    'evaluate': [
        'Evaluation', 'lightcurve_dispersion', 'summary_statistics'],
    'features': [
        'FEATURE_VERSION', 'Prepared', 'StampFeatures'],
    'guard': [
        'Guard', 'fit_guard'],
    'model': [
        'StampCNN', 'StampMLP'],
    'modelfile': [
        'MODEL_FORMAT', 'MODEL_FORMAT_VERSION', 'Prediction',
        'SaturatedStarModel', 'convert_v1_model'],
    'registry': [
        'architecture_types', 'get_architecture', 'register_architecture'],
    'training': [
        'PRESETS', 'Trainer', 'TrainingConfig'],
})
