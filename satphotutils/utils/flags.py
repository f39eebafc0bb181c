# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Bit flags of satphotutils results.

One integer ``flags`` column holds photutils-compatible bits (the
aperture-photometry meanings, below 65536) and satphotutils bits from
65536 up, so that photutils' decoders still read the low bits. Every
stage (photometry, light curves, intercalibration) sets bits of this one
registry, so a light curve carries its photometry flags through the
intercalibration and `decode_flags` names every bit of every output;
``SATPHOT_FLAGS.to_meta()`` writes their meanings into a table's metadata.
"""

import dataclasses

import numpy as np

__all__ = ['SATPHOT_FLAGS', 'FlagDefinition', 'decode_flags']


@dataclasses.dataclass(frozen=True)
class FlagDefinition:
    """
    One flag bit: its value, name and meaning.

    Examples
    --------
    >>> from satphotutils.utils.flags import SATPHOT_FLAGS
    >>> d = SATPHOT_FLAGS.definitions[0]
    >>> d.bit_value, d.name
    (1, 'no_overlap')
    """

    bit_value: int
    name: str
    description: str


_DEFINITIONS = (
    # photutils aperture-photometry bits (same values and meanings).
    FlagDefinition(1, 'no_overlap',
                   'the aperture or stamp does not overlap the data'),
    FlagDefinition(2, 'partial_overlap',
                   'the aperture or stamp is cut by the image edge'),
    FlagDefinition(8, 'masked_pixels',
                   'masked pixels inside the aperture or stamp'),
    FlagDefinition(16, 'non_finite_data',
                   'non-finite pixels (NaN or inf) where they are read: '
                   'within the radius or, for the network, in its '
                   'background annulus (it takes them at the background)'),
    # satphotutils bits.
    FlagDefinition(65536, 'damaged_core',
                   'more than four pixels within 5 px are exactly 1: the '
                   'survey pipeline damaged the core (the paper rejects '
                   'such stamps)'),
    FlagDefinition(131072, 'outside_training_range',
                   "the prediction is outside the range of the model's "
                   'training labels'),
    FlagDefinition(262144, 'hybrid_classical',
                   'the frame-level hybrid (SaturatedStarPhotometry '
                   "hybrid=True) returned the exact 2-px aperture sum put "
                   "on the network's scale by the frame's offset surface, "
                   'where the two agree (an isolated unsaturated star); '
                   "method 'ap2'"),
    FlagDefinition(524288, 'unknown_camera',
                   "the camera/filter is not in the model's encoding; the "
                   'camera-agnostic encoding was used'),
    FlagDefinition(1048576, 'near_edge',
                   'the target is closer to the image edge than the '
                   'stamp half-size'),
    FlagDefinition(2097152, 'lightcurve_outlier',
                   'a light-curve point rejected by sigma clipping (MAD '
                   'standard deviation) about the median'),
    FlagDefinition(4194304, 'no_calibration',
                   'the frame could not be calibrated (no zero point, or '
                   'too few comparison stars)'),
    FlagDefinition(8388608, 'no_signal',
                   'the background-subtracted sum within the radius is '
                   'not positive: there is no star to measure (flux NaN)'),
    FlagDefinition(16777216, 'fit_problem',
                   'the PSF fit of the wings may not have converged, has '
                   'no covariance, or ended at a bound or non-finite '
                   '(PSFWingPhotometry)'),
    FlagDefinition(33554432, 'classical_lookup',
                   'the model-level lookup (SaturatedStarModel '
                   'predict_prepared hybrid=True; satphot predict and '
                   'evaluate --hybrid) returned the classical estimate '
                   'that beat the network on the validation stars of this '
                   "brightness, plus its offset; method 'lookup_<estimate>'"),
    # Intercalibration bits (2**26 and up). A point carrying any of them
    # was left out of the fit of the offsets; it keeps its row.
    FlagDefinition(67108864, 'intercal_faintest',
                   'among the faintest points of its camera/filter group, '
                   'left out of the intercalibration fit (drop_faintest)'),
    FlagDefinition(134217728, 'intercal_clipped',
                   'rejected as an outlier by the robust intercalibration '
                   '(clipped against the running median of all groups or '
                   'the damped-random-walk prediction)'),
    FlagDefinition(268435456, 'bad_quality',
                   "marked bad by its source (the survey's quality flag, "
                   'or a rejecting photometry or light-curve flag), left '
                   'out of the intercalibration fit'),
    FlagDefinition(536870912, 'small_group',
                   'its camera/filter group has too few usable points for '
                   'an offset: left out of the intercalibrated light '
                   'curve unless kept on request (then uncorrected)'),
    FlagDefinition(1073741824, 'rejected_group',
                   "its camera/filter group's offset is implausible (too "
                   'large, or inconsistent with the other groups of its '
                   'filter) or most of its points were clipped: left out '
                   'of the intercalibrated light curve unless kept on '
                   'request'),
    # 2**31: still well inside the int64 flags column.
    FlagDefinition(2147483648, 'out_of_distribution',
                   "the stamp is unlike the model's training stamps: its "
                   "embedding's Mahalanobis distance from them exceeds the "
                   'threshold calibrated on validation stamps (ood_score '
                   '> 1, satphotutils.network.guard); the network value '
                   'may be badly off, and the frame-level hybrid returns '
                   'its classical estimate instead where it has one'),
    FlagDefinition(4294967296, 'recentre_rejected',
                   "re-centring (satphotutils.photometry.recentre) did not "
                   "find the star where expected: the frame's shift "
                   'exceeds max_shift pixels (not applied: measured at the '
                   "given position), or the target's own centroid lies "
                   'further than max_shift from its shifted position; the '
                   'position, and so the value, may be off the star'),
    # Bleed-trail photometry (BleedTrailPhotometry) on frames whose
    # trails were left in place.
    FlagDefinition(8589934592, 'trail_edge',
                   "the target's saturated region (its bleed trail) "
                   'reaches the edge of the image: the charge that ran off '
                   'the detector is missing (BleedTrailPhotometry)'),
    FlagDefinition(17179869184, 'trail_merged',
                   "the target's saturated region also holds another "
                   'target or catalogue star (merged trails, or a star on '
                   'the trail; it was divided, so the split may be off), '
                   "or its sum holds another saturated star's core or "
                   'trail that neither list names, or its small circle '
                   "reaches another star's trail (BleedTrailPhotometry)"),
    FlagDefinition(34359738368, 'trail_masked',
                   'masked or non-finite pixels in the aperture or next to '
                   "the target's saturated region: charge there is not "
                   'counted (BleedTrailPhotometry)'),
    FlagDefinition(68719476736, 'trail_wings',
                   "the target lies on a brighter star's bleed trail, "
                   'where its charge joined the trail: measured by its '
                   "wings beside the trail's columns (a few per cent of "
                   'its light, so to tenths of a magnitude) and taken off '
                   "that star's sum; with no_signal, too close to that "
                   "star's core to be told from it (BleedTrailPhotometry)"),
)


class _Registry:
    """The flag definitions, with upper-case constants by name."""

    def __init__(self, definitions):
        self.definitions = tuple(definitions)
        for d in self.definitions:
            setattr(self, d.name.upper(), d.bit_value)

    def __iter__(self):
        return iter(self.definitions)

    def get_name(self, bit_value):
        """Return the name of a bit."""
        for d in self.definitions:
            if d.bit_value == bit_value:
                return d.name
        msg = f'unknown flag bit {bit_value}'
        raise KeyError(msg)

    def get_description(self, bit_value):
        """Return the description of a bit."""
        for d in self.definitions:
            if d.bit_value == bit_value:
                return d.description
        msg = f'unknown flag bit {bit_value}'
        raise KeyError(msg)

    def to_meta(self, names=None):
        """
        Return the meanings of flag bits, for a table's metadata.

        Parameters
        ----------
        names : iterable of str, optional
            The flags to describe, by name; every flag if `None`.

        Returns
        -------
        meanings : dict
            Flag name to ``{'bit': value, 'description': text}``, in
            the order of the bits.

        Raises
        ------
        KeyError
            If a name is not a flag of the registry.

        Examples
        --------
        >>> from satphotutils.utils.flags import SATPHOT_FLAGS
        >>> SATPHOT_FLAGS.to_meta(['intercal_clipped'])['intercal_clipped'][
        ...     'bit']
        134217728
        """
        if names is None:
            chosen = self.definitions
        else:
            by_name = {d.name: d for d in self.definitions}
            wanted = set(names)
            unknown = sorted(wanted - set(by_name))
            if unknown:
                msg = (f'unknown flag names {unknown}; the registry has '
                       f'{sorted(by_name)}')
                raise KeyError(msg)
            chosen = [d for d in self.definitions if d.name in wanted]
        return {d.name: {'bit': d.bit_value, 'description': d.description}
                for d in chosen}


#: The registry of flag bits; ``SATPHOT_FLAGS.DAMAGED_CORE == 65536``.
SATPHOT_FLAGS = _Registry(_DEFINITIONS)


def decode_flags(flags, *, return_bit_values=False):
    """
    Decode a flags value or column into flag names.

    Parameters
    ----------
    flags : int or array-like of int
        Flag values.

    return_bit_values : bool, optional
        Return the bit values instead of the names.

    Returns
    -------
    decoded : list or list of lists
        The set flags of a scalar, or of each element.

    Examples
    --------
    >>> from satphotutils.utils.flags import decode_flags
    >>> decode_flags(65536 + 2)
    ['partial_overlap', 'damaged_core']
    >>> decode_flags([0, 262144])
    [[], ['hybrid_classical']]
    """
    def one(value):
        value = int(value)
        return [d.bit_value if return_bit_values else d.name
                for d in SATPHOT_FLAGS if value & d.bit_value]

    if np.ndim(flags) == 0:
        return one(flags)
    return [one(v) for v in np.ravel(flags)]
