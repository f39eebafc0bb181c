import importlib
import subprocess
import sys

import pytest

PACKAGES = ['frames', 'simulation', 'calibration', 'stamps', 'network',
            'photometry', 'lightcurves', 'intercalibration']


@pytest.mark.parametrize('package', PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(f'satphotutils.{package}')
    assert sorted(dir(module)) == sorted(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        assert not isinstance(value, type(module)), name
    with pytest.raises(AttributeError, match='has no attribute'):
        module.no_such_name  # noqa: B018


@pytest.mark.parametrize('package', PACKAGES)
def test_namespace_lists_every_module_export(package):
    import pkgutil

    module = importlib.import_module(f'satphotutils.{package}')
    exported = set()
    for info in pkgutil.iter_modules(module.__path__):
        if not info.name.startswith('_'):
            sub = importlib.import_module(f'{module.__name__}.{info.name}')
            exported |= set(getattr(sub, '__all__', []))
    assert set(module.__all__) == exported


def test_observe_is_the_function_after_its_module_is_imported():
    import satphotutils.simulation.observation  # noqa: F401
    from satphotutils.simulation import observe

    assert callable(observe)
    assert observe.__name__ == 'observe'


def test_command_line_registration_imports_no_science_code():
    code = ('import sys; from satphotutils.cli import build_parser; '
            'build_parser(); '
            'print(sorted(m for m in ("torch", "scipy.ndimage", '
            '"astropy.table", "satphotutils.simulation.frames") '
            'if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == '[]'
