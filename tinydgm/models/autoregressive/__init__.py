"""Autoregressive models: p(x) = prod_d p(x_d | x_<d) (intro lecture part III, eq. 42; ermon-song-cs236-l16).

    nade.py             NADE (Larochelle & Murray 2011), the O(DH) shared-weight recursion
    made.py             MADE (Germain et al. 2015), masks over an MLP, mask ensembles
    pixelcnn.py         PixelCNN (van den Oord et al. 2016), masked convolutions A/B
    gated_pixelcnn.py   Gated PixelCNN, vertical and horizontal stacks without the blind spot
    conditional_pixelcnn.py   a PixelCNN conditioned on a spatial map (PixelVAE, hierarchical)
    hierarchical_pixelcnn.py  Hierarchical PixelCNN (Kolesnikov & Lampert 2017), p(x_hat) p(x | x_hat)
    multiscale_pixelcnn.py    Parallel multiscale PixelCNN (Reed et al. 2017), 2x2 pixel groups
    pixelrnn.py         PixelRNN (van den Oord et al. 2016), Row LSTM layers, row by row
    rnn.py              an LSTM over sequences, p(x_t | h_{t-1}) Gaussian, mixture or Bernoulli

The sequential sampling loops run on the Numba kernels of ``tinydgm.kernels``.
"""
from tinydgm.models.autoregressive.conditional_pixelcnn import ConditionalPixelCNN
from tinydgm.models.autoregressive.gated_pixelcnn import GatedPixelCNN
from tinydgm.models.autoregressive.hierarchical_pixelcnn import HierarchicalPixelCNN
from tinydgm.models.autoregressive.made import MADE
from tinydgm.models.autoregressive.multiscale_pixelcnn import MultiscalePixelCNN
from tinydgm.models.autoregressive.nade import NADE
from tinydgm.models.autoregressive.pixelcnn import PixelCNN
from tinydgm.models.autoregressive.pixelrnn import PixelRNN
from tinydgm.models.autoregressive.rnn import AutoregressiveRNN

__all__ = ["NADE", "MADE", "PixelCNN", "GatedPixelCNN", "ConditionalPixelCNN", "HierarchicalPixelCNN",
           "MultiscalePixelCNN", "AutoregressiveRNN", "PixelRNN"]
