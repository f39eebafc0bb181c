"""Every public function and class is documented in numpydoc style."""

import importlib
import inspect

import pytest

MODULES = ['simulation', 'calibration', 'stamps', 'network', 'photometry',
           'lightcurves', 'intercalibration', 'utils.io', 'utils.stats',
           'utils.flags']


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
    # The examples themselves run as doctests of the package.
    doc = inspect.getdoc(obj) or ''
    assert doc, f'{name} has no docstring'
    assert doc.count('Examples\n--------\n') == 1, f'{name}: Examples'
    assert '>>> ' in doc.split('Examples\n--------\n')[1]
