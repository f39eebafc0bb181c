"""Every public function and class is documented in numpydoc style."""

import importlib
import inspect

import pytest

MODULES = ['simulation', 'calibration', 'stamps', 'network', 'photometry',
           'lightcurves', 'intercalibration', 'utils.io', 'utils.stats',
           'utils.flags']

# Still without a runnable Examples section: the list may only shrink.
WITHOUT_EXAMPLES = {
    'simulation.Camera', 'simulation.Constant', 'simulation.DampedRandomWalk',
    'simulation.Detector', 'simulation.EclipsingBinary',
    'simulation.ExposureConditions', 'simulation.MoffatPSF',
    'simulation.Observation', 'simulation.Scene', 'simulation.SurveyPipeline',
    'simulation.draw_conditions',
    'simulation.draw_stars', 'simulation.expose', 'simulation.expose_and_read',
    'simulation.galactic_density_factor', 'simulation.latitude_factor',
    'simulation.observe', 'simulation.observe_many', 'simulation.read_out',
    'simulation.render_gaussian', 'simulation.render_stars',
    'simulation.simulate_field', 'calibration.GaiaArchive',
    'calibration.GaiaRelation', 'calibration.gaia_to_sdss_i',
    'calibration.gaia_to_sdss_r', 'calibration.neighbour_flux',
    'calibration.stellar_background', 'stamps.BuildReport',
    'stamps.StampBuilder', 'stamps.iter_stamp_table', 'network.StampMLP',
    'network.load_features', 'lightcurves.LightCurveRun',
    'intercalibration.IntercalibrationResult', 'utils.flags.FlagDefinition',
}


def _public():
    for module_name in MODULES:
        module = importlib.import_module(f'satphotutils.{module_name}')
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or (inspect.isclass(obj) and not
                                           issubclass(obj, BaseException)):
                yield f'{module_name}.{name}', obj


@pytest.mark.parametrize(('name', 'obj'), list(_public()),
                         ids=lambda v: v if isinstance(v, str) else '')
def test_numpydoc_sections(name, obj):
    doc = inspect.getdoc(obj) or ''
    assert doc, f'{name} has no docstring'
    if name in WITHOUT_EXAMPLES:
        assert 'Examples\n--------' not in doc, (
            f'{name} has Examples now: remove it from WITHOUT_EXAMPLES')
    else:
        assert 'Examples\n--------\n' in doc, f'{name} lacks Examples'
        assert '>>> ' in doc
