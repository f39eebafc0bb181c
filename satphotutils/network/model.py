# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The networks: a multi-layer perceptron and a small CNN.

Both have the same mean and width heads.

Both read the standardised feature vector of
`~satphotutils.network.StampFeatures` and are registered in
``satphotutils.network.registry`` (types ``'mlp'`` and ``'cnn'``).
"""

import torch
from torch import nn

from .registry import check_options, config_int, register_architecture

__all__ = ['StampCNN', 'StampMLP']


class _TwoHeads(nn.Module):
    """The mean and log-sigma heads shared by the architectures."""

    def _init_heads(self, width):
        self.mean_head = nn.Linear(width, 1)
        self.sigma_head = nn.Sequential(
            nn.Linear(width, 64), nn.SiLU(), nn.Linear(64, 1))
        # Start from "no correction to the aperture sum, 0.03 dex".
        with torch.no_grad():
            self.mean_head.weight.mul_(0.01)
            self.mean_head.bias.zero_()
            self.sigma_head[-1].bias.fill_(-3.5)

    def heads(self, h):
        """
        Return ``(mean, log_sigma)`` for embeddings ``h`` (see `embed`).

        ``forward(x)`` is ``heads(embed(x))``; the two steps are separate
        so that a prediction can keep the embedding for the
        out-of-distribution guard without a second pass.
        """
        mean = self.mean_head(h)[:, 0]
        # The width head sees the features but does not train them: the
        # uncertainty never pulls the mean.
        log_sigma = self.sigma_head(h.detach())[:, 0].clamp(-12.0, 3.0)
        return mean, log_sigma


def _dense(n_in, width, depth):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.SiLU()]
        n_in = width
    return nn.Sequential(*layers)


@register_architecture
class StampMLP(_TwoHeads):
    """
    A fully connected network predicting a value and its uncertainty.

    Registered as architecture type ``'mlp'``.

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
    >>> net.to_config()
    {'type': 'mlp', 'width': 16, 'depth': 2}
    """

    architecture_type = 'mlp'

    def __init__(self, n_features, *, width=256, depth=3):
        super().__init__()
        if depth < 1 or width < 1:
            msg = 'depth and width must be positive'
            raise ValueError(msg)
        self.n_features = int(n_features)
        self.width = int(width)
        self.depth = int(depth)
        self.body = _dense(self.n_features, self.width, self.depth)
        self._init_heads(self.width)

    def to_config(self):
        """Return the architecture options, with ``'type'``."""
        return {'type': self.architecture_type, 'width': self.width,
                'depth': self.depth}

    @classmethod
    def from_config(cls, config, *, features):
        """
        Build from `to_config` output for ``features``.

        ``width`` may be 1-4096 and ``depth`` 1-16.
        """
        check_options(config, ('width', 'depth'))
        return cls(features.n_features,
                   width=config_int(config, 'width', default=256, lo=1,
                                    hi=4096),
                   depth=config_int(config, 'depth', default=3, lo=1,
                                    hi=16))

    def embed(self, x):
        """
        Return the last hidden activations for inputs ``x``, (N, width).

        Both heads read them; the out-of-distribution guard
        (``satphotutils.network.guard``) models their density.
        """
        return self.body(x)

    def forward(self, x):
        """Return the mean and log standard deviation for inputs ``x``."""
        return self.heads(self.embed(x))


@register_architecture
class StampCNN(_TwoHeads):
    """
    A small convolutional network over the stamp's pixel block.

    Registered as architecture type ``'cnn'``. It reads the same
    standardised feature vector as `StampMLP`: the pixel and exactly-1
    blocks are scattered back onto their grid (square for the circle of
    a square stamp; for a tall stamp's stadium ``ny - nx + 2 radius + 1``
    rows along the trail by ``2 radius + 1`` columns; with a third,
    constant plane marking the circle, so that the zeros outside it are
    not mistaken for data), convolved, flattened and joined with the
    scalar features and the camera code for a dense part and the same
    two heads.

    Parameters
    ----------
    features : `~satphotutils.network.StampFeatures`
        The preprocessing: the number of features and where each pixel
        feature sits on the grid.

    channels : int, optional
        Channels of each convolution (3 x 3, same padding).

    conv_layers : int, optional
        Number of convolutions.

    width, depth : int, optional
        Width and number of the dense layers after the convolutions.

    Notes
    -----
    Scattering inside the network, rather than giving the features a 2-D
    view, keeps one input format for every architecture: the
    standardisation, the reflections (permutations of the feature
    vector, which are flips of the grid), the camera dropout and the
    model file are shared with the MLP unchanged.

    Examples
    --------
    >>> import torch
    >>> from satphotutils.network import StampCNN, StampFeatures
    >>> features = StampFeatures()
    >>> net = StampCNN(features, channels=4, width=16, depth=1)
    >>> mean, log_sigma = net(torch.zeros(3, features.n_features))
    >>> tuple(mean.shape), net.to_config()['type']
    ((3,), 'cnn')
    """

    architecture_type = 'cnn'

    def __init__(self, features, *, channels=16, conv_layers=2, width=128,
                 depth=2):
        super().__init__()
        self.n_features = int(features.n_features)
        self.n_pixels = int(features.n_pixels)
        self.channels = int(channels)
        self.conv_layers = int(conv_layers)
        self.width = int(width)
        self.depth = int(depth)
        if min(self.channels, self.conv_layers, self.width,
               self.depth) < 1:
            msg = 'channels, conv_layers, width and depth must be positive'
            raise ValueError(msg)
        dy, dx = features.pixel_offsets
        hy, hx = int(abs(dy).max()), int(abs(dx).max())
        self.grid_shape = (2 * hy + 1, 2 * hx + 1)
        index = torch.as_tensor((dy + hy) * self.grid_shape[1] + dx + hx,
                                dtype=torch.long)
        # Derived from the features, not learnt: not saved in the file.
        self.register_buffer('grid_index', index, persistent=False)
        convs, n_in = [], 3
        for _ in range(self.conv_layers):
            convs += [nn.Conv2d(n_in, self.channels, 3, padding=1),
                      nn.SiLU()]
            n_in = self.channels
        self.conv = nn.Sequential(*convs)
        n_dense = (self.channels * self.grid_shape[0] * self.grid_shape[1]
                   + self.n_features - 2 * self.n_pixels)
        self.body = _dense(n_dense, self.width, self.depth)
        self._init_heads(self.width)

    def to_config(self):
        """Return the architecture options, with ``'type'``."""
        return {'type': self.architecture_type, 'channels': self.channels,
                'conv_layers': self.conv_layers, 'width': self.width,
                'depth': self.depth}

    @classmethod
    def from_config(cls, config, *, features):
        """
        Build from `to_config` output for ``features``.

        ``channels`` may be 1-256, ``conv_layers`` 1-8, ``width`` 1-4096
        and ``depth`` 1-16.
        """
        check_options(config, ('channels', 'conv_layers', 'width', 'depth'))
        return cls(features,
                   channels=config_int(config, 'channels', default=16, lo=1,
                                       hi=256),
                   conv_layers=config_int(config, 'conv_layers', default=2,
                                          lo=1, hi=8),
                   width=config_int(config, 'width', default=128, lo=1,
                                    hi=4096),
                   depth=config_int(config, 'depth', default=2, lo=1,
                                    hi=16))

    def embed(self, x):
        """
        Return the last hidden activations for inputs ``x``, (N, width).

        Both heads read them; the out-of-distribution guard
        (``satphotutils.network.guard``) models their density.
        """
        n, m = len(x), self.n_pixels
        planes = torch.stack([x[:, :m], x[:, m:2 * m],
                              torch.ones_like(x[:, :m])], dim=1)
        gy, gx = self.grid_shape
        grid = x.new_zeros((n, 3, gy * gx)).index_copy(
            2, self.grid_index, planes)
        h = self.conv(grid.view(n, 3, gy, gx))
        h = torch.cat([h.flatten(1), x[:, 2 * m:]], dim=1)
        return self.body(h)

    def forward(self, x):
        """Return the mean and log standard deviation for inputs ``x``."""
        return self.heads(self.embed(x))
