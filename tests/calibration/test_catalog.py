import re

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from satphotutils.calibration import (
    GAIA_COLUMNS,
    GaiaArchive,
    LocalGaiaCatalog,
    sample_per_magnitude_bin,
    select_non_variable,
)
from satphotutils.utils.exceptions import SatphotutilsError


@pytest.fixture(name='sky')
def fixture_sky(rng):
    """A fake all-sky Gaia table: dense around (359.5, 10) across RA=0."""
    n = 20000
    centre = SkyCoord(359.5, 10.0, unit='deg')
    coord = centre.directional_offset_by(
        rng.uniform(0, 360, n) * u.deg,
        2.5 * np.sqrt(rng.uniform(0, 1, n)) * u.deg)
    G = rng.uniform(3, 20, n)
    return Table({
        'source_id': np.arange(n, dtype=np.int64) + 10**15,
        'ra': coord.ra.deg, 'dec': coord.dec.deg,
        'phot_g_mean_mag': G, 'phot_bp_mean_mag': G + 0.3,
        'phot_rp_mean_mag': G - 0.7, 'bp_rp': np.full(n, 1.0),
        'phot_variable_flag': np.where(rng.uniform(size=n) < 0.1,
                                       'VARIABLE', 'NOT_AVAILABLE')})


class FakeGaia:
    """Evaluates the simple ADQL the archive backend writes on a table."""

    def __init__(self, table, failures=0):
        self.table = table
        self.queries = []
        self.failures = failures

    def launch_job_async(self, query):
        self.queries.append(query)
        if self.failures:
            self.failures -= 1
            raise ConnectionError('simulated network failure')
        t = self.table
        keep = np.ones(len(t), bool)
        for name, op, value in re.findall(
                r'(ra|dec|phot_g_mean_mag) (>=|<=|<) (-?[\d.]+)', query):
            col, value = np.asarray(t[name]), float(value)
            keep &= {'>=': col >= value, '<=': col <= value,
                     '<': col < value}[op]
        circle = re.search(r"CIRCLE\('ICRS', ([-\d.]+), ([-\d.]+), "
                           r'([-\d.]+)\)', query)
        if circle:
            ra0, dec0, r = map(float, circle.groups())
            sep = SkyCoord(t['ra'], t['dec'], unit='deg').separation(
                SkyCoord(ra0, dec0, unit='deg')).deg
            keep &= sep <= r
        result = t[keep]

        class Job:
            def get_results(self):
                return result

        return Job()


def test_archive_and_local_backends_agree_across_ra_zero(sky, tmp_path):
    archive = GaiaArchive(cache_dir=tmp_path, service=FakeGaia(sky),
                          tile_size=0.5 * u.deg)
    local = LocalGaiaCatalog(sky)
    centre = SkyCoord(0.2, 10.3, unit='deg')
    for search in (lambda c: c.cone(centre, 40 * u.arcmin, g_max=15),
                   lambda c: c.box(centre, 1.5 * u.deg, 1.0 * u.deg)):
        a, b = search(archive), search(local)
        assert len(a) > 100
        assert sorted(a['source_id']) == sorted(b['source_id'])
    # The cone is exact: compare with a brute-force separation cut.
    sep = SkyCoord(sky['ra'], sky['dec'], unit='deg').separation(centre)
    expected = (sep < 40 * u.arcmin) & (sky['phot_g_mean_mag'] < 15)
    cone = archive.cone(centre, 40 * u.arcmin, g_max=15)
    assert sorted(cone['source_id']) == sorted(sky['source_id'][expected])


def test_large_areas_are_paged_and_deduplicated(sky, tmp_path):
    service = FakeGaia(sky)
    archive = GaiaArchive(cache_dir=tmp_path, service=service,
                          tile_size=0.5 * u.deg)
    result = archive.box(SkyCoord(359.5, 10.0, unit='deg'), 3 * u.deg,
                         2 * u.deg)
    assert len(service.queries) >= 20
    assert len(np.unique(result['source_id'])) == len(result)
    local = LocalGaiaCatalog(sky).box(SkyCoord(359.5, 10.0, unit='deg'),
                                      3 * u.deg, 2 * u.deg)
    assert len(result) == len(local)


def test_cache_offline_mode_names_the_missing_query(sky, tmp_path):
    service = FakeGaia(sky)
    online = GaiaArchive(cache_dir=tmp_path, service=service)
    centre = SkyCoord(359.8, 9.5, unit='deg')
    first = online.cone(centre, 5 * u.arcmin)
    n_queries = len(service.queries)
    again = online.cone(centre, 5 * u.arcmin)
    assert len(service.queries) == n_queries  # served from the cache
    assert list(again['source_id']) == list(first['source_id'])
    assert set(GAIA_COLUMNS) <= set(again.colnames)

    offline = GaiaArchive(cache_dir=tmp_path, offline=True,
                          service=FakeGaia(sky, failures=99))
    cached = offline.cone(centre, 5 * u.arcmin)
    assert list(cached['source_id']) == list(first['source_id'])
    with pytest.raises(SatphotutilsError,
                       match=r'offline mode.*not in the cache.*SELECT'):
        offline.cone(centre, 6 * u.arcmin)
    with pytest.raises(ValueError, match='needs a cache_dir'):
        GaiaArchive(offline=True)


def test_retries_with_backoff(sky, tmp_path, monkeypatch):
    sleeps = []
    monkeypatch.setattr('time.sleep', sleeps.append)
    service = FakeGaia(sky, failures=2)
    archive = GaiaArchive(cache_dir=tmp_path, service=service, retries=3,
                          backoff=1.5)
    archive.cone(SkyCoord(359.5, 10.0, unit='deg'), 2 * u.arcmin)
    assert sleeps == [1.5, 3.0]
    failing = GaiaArchive(service=FakeGaia(sky, failures=99), retries=1,
                          backoff=0.1)
    with pytest.raises(SatphotutilsError, match='failed after 2 attempts'):
        failing.cone(SkyCoord(359.5, 10.0, unit='deg'), 2 * u.arcmin)


def test_local_catalog_reads_files_and_validates(sky, tmp_path):
    path = tmp_path / 'gaia.ecsv'
    sky[:100].write(path)
    assert len(LocalGaiaCatalog(path).table) == 100
    with pytest.raises(ValueError, match='phot_g_mean_mag'):
        LocalGaiaCatalog(Table({'ra': [1.0], 'dec': [1.0]}))
    with pytest.raises(TypeError, match='angle Quantity'):
        LocalGaiaCatalog(sky).cone(SkyCoord(0, 0, unit='deg'), 1.0)


def test_selection_helpers(sky):
    quiet = select_non_variable(sky)
    assert 'VARIABLE' not in set(quiet['phot_variable_flag'])
    assert len(quiet) == np.count_nonzero(
        sky['phot_variable_flag'] != 'VARIABLE')
    sample = sample_per_magnitude_bin(sky, 200, start=3.0, stop=20.0,
                                      seed=2)
    counts, _ = np.histogram(sample['phot_g_mean_mag'],
                             bins=np.arange(3, 21))
    assert list(counts) == [200] * 17
    with pytest.raises(ValueError, match='phot_variable_flag'):
        select_non_variable(sky[['ra', 'dec']])


@pytest.mark.remote_data
def test_real_gaia_archive_cone(tmp_path):
    archive = GaiaArchive(cache_dir=tmp_path)
    # The Pleiades core: many stars brighter than G = 14 within 10'.
    result = archive.cone(SkyCoord(56.75, 24.1167, unit='deg'),
                          10 * u.arcmin, g_max=14)
    assert len(result) > 5
    assert set(GAIA_COLUMNS) <= set(result.colnames)
    assert result['phot_g_mean_mag'].max() < 14
    assert len(list(tmp_path.glob('*.ecsv'))) == 1
