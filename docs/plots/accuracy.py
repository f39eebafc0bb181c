# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The paper's Figs. 3 and 4 for the bundled model, on new simulated stamps.

Drawn when the documentation is built (docs/method.rst and
docs/gallery.rst include it with the plot directive).
"""

import matplotlib.pyplot as plt
import numpy as np

from satphotutils.network import Evaluation, SaturatedStarModel
from satphotutils.simulation import StampSimulator

stamps = StampSimulator(g_range=(4.0, 14.0), images_per_star=9,
                        exposures_per_epoch=3)(300, seed=12)
evaluation = Evaluation(SaturatedStarModel.default(), ensemble=True)
rows = evaluation(stamps)
summary = evaluation.statistics(rows)
rows = rows[rows['n_unity'] <= 4]
mag = np.asarray(rows['mag'])
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout='constrained')
for ax, name, label in ((axes[0], 'diff_network', 'network'),
                        (axes[1], 'diff_ap2', '2-px aperture')):
    ax.plot(mag, np.asarray(rows[name]), '.', ms=1.5, color='0.4')
    ax.axvline(11.5, color='k', lw=0.5)
    ax.set_ylim(-0.5, 0.5)
    ax.set_xlabel('g [mag]')
    ax.set_title(f'{label}: single exposures')
axes[0].set_ylabel('measured - expected [mag]')
per = summary['per_star']
best = np.nanmin(np.column_stack([per['ap2'], per['ap3'], per['ap5']]),
                 axis=1)
axes[2].semilogy(per['mag'], best, 's', ms=2, color='k',
                 label='best aperture')
axes[2].semilogy(per['mag'], per['network'], '^', ms=2, color='r',
                 label='network')
axes[2].axvline(11.5, color='k', lw=0.5)
axes[2].set_xlabel('g [mag]')
axes[2].set_ylabel('light-curve dispersion [mag]')
axes[2].legend()
