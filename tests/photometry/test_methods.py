import pytest

from satphotutils.photometry.methods import METHODS, photometry_method


@pytest.mark.parametrize('name', ['aperture', 'psf-wing', 'bleed-trail'])
def test_options_not_given_are_the_methods_defaults(name):
    # The command line passes every option, None when not given: the
    # method is then built with its own defaults (satphot lightcurve
    # --method aperture without --aperture-radius crashed on radius=None).
    given = photometry_method(name, radius=None, model=None,
                              header_keys=None, fwhm=None,
                              saturation_level=None)
    plain = photometry_method(name)
    assert type(given) is type(plain)
    assert given._config() == plain._config()


def test_every_method_is_registered():
    assert set(METHODS) == {'network', 'aperture', 'psf-wing', 'bleed-trail'}
