"""A lookup table of learned vectors, for class conditioning (conditional PixelCNN, cVAE,
conditional GANs): label k -> row k of the weight."""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor
from tinydgm.autodiff.shape import getitem
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter


class Embedding(Module):
    """y[..., :] = W[labels[...], :] with W of shape (num_embeddings, embedding_dim).

    ``labels`` are integers in [0, num_embeddings) of any shape (an array, a list or an
    integer Tensor); the output has shape ``labels.shape + (embedding_dim,)``. The lookup
    is the engine's indexing, so the gradient scatter-adds: a label used k times in a
    batch gets the sum of its k gradients. A one-hot vector times W, without the matrix.

    Initialisation: W ~ N(0, 1) (PyTorch's default).
    """

    own_input_rule = True       # its input stays integer labels (no cast to the weight's dtype)

    def __init__(self, num_embeddings, embedding_dim, rng=None, dtype=None, device=None):
        super().__init__()
        for arg, value in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Embedding: {arg} must be a positive int, got {value!r}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(init.normal((num_embeddings, embedding_dim), 1.0, rng, dtype, device))

    def forward(self, labels):
        labels = self._labels(labels)
        return getitem(self.weight, labels)

    def _labels(self, labels):
        """The labels as an integer array on the weight's device, checked for range."""
        if isinstance(labels, Tensor):
            labels = labels.data
        labels = backend.as_array(labels, device=self.weight.device) if not backend.is_array(labels) \
            else backend.to_device(labels, self.weight.device)
        if labels.dtype.kind not in "iu":
            raise TypeError(f"Embedding: labels must be integers, got dtype {labels.dtype}")
        if labels.size:
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_embeddings:
                bad = low if low < 0 else high
                raise IndexError(f"Embedding: label {bad} is out of range for {self.num_embeddings} "
                                 f"embeddings (labels must lie in [0, {self.num_embeddings - 1}])")
        return labels

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"
