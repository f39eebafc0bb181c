# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The network: a multi-layer perceptron with a mean and a width head."""

import torch
from torch import nn

__all__ = ['StampMLP']


class StampMLP(nn.Module):
    """
    A fully connected network predicting a value and its uncertainty.

    Parameters
    ----------
    n_features : int
        Number of inputs.

    width : int, optional
        Width of the hidden layers (the paper's 256).

    depth : int, optional
        Number of hidden layers.

    Notes
    -----
    The forward pass returns ``(mean, log_sigma)``, each of shape (N,).
    The mean head is trained on its own loss and the width head on the
    Gaussian likelihood of the residuals with the mean held fixed, so
    the uncertainty never pulls the mean.

    Examples
    --------
    >>> import torch
    >>> from satphotutils.network import StampMLP
    >>> net = StampMLP(10, width=16, depth=2)
    >>> mean, log_sigma = net(torch.zeros(4, 10))
    >>> tuple(mean.shape), tuple(log_sigma.shape)
    ((4,), (4,))
    """

    def __init__(self, n_features, *, width=256, depth=3):
        super().__init__()
        if depth < 1 or width < 1:
            msg = 'depth and width must be positive'
            raise ValueError(msg)
        self.n_features = int(n_features)
        self.width = int(width)
        self.depth = int(depth)
        layers = []
        n_in = self.n_features
        for _ in range(self.depth):
            layers += [nn.Linear(n_in, self.width), nn.SiLU()]
            n_in = self.width
        self.body = nn.Sequential(*layers)
        self.mean_head = nn.Linear(self.width, 1)
        self.sigma_head = nn.Sequential(
            nn.Linear(self.width, 64), nn.SiLU(), nn.Linear(64, 1))
        # Start from "no correction to the aperture sum, 0.03 dex".
        with torch.no_grad():
            self.mean_head.weight.mul_(0.01)
            self.mean_head.bias.zero_()
            self.sigma_head[-1].bias.fill_(-3.5)

    def forward(self, x):
        """Return the mean and log standard deviation for inputs ``x``."""
        h = self.body(x)
        mean = self.mean_head(h)[:, 0]
        log_sigma = self.sigma_head(h.detach())[:, 0].clamp(-12.0, 3.0)
        return mean, log_sigma
