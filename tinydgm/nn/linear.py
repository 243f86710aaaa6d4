"""The dense layer y = x W + b."""
from tinydgm.autodiff.linalg import matmul
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter


class Linear(Module):
    """y = x W + b with W of shape (in_features, out_features), so the code reads like the
    math of a row-vector batch x (N, in_features). (PyTorch stores W transposed.)

    Initialisation: W, b ~ U(-1/sqrt(in_features), 1/sqrt(in_features)) (PyTorch's default),
    or W = 0 with ``zero_init=True`` (the last layer of a coupling network).
    """

    def __init__(self, in_features, out_features, bias=True, zero_init=False, rng=None, dtype=None,
                 device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        weight, b = init.default_weight_and_bias((in_features, out_features), "dense", out_features, bias,
                                                 zero_init, rng, dtype, device)
        self.weight = Parameter(weight)
        self.bias = None if b is None else Parameter(b)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input has {x.shape[-1]} features (shape {x.shape}) but the layer "
                             f"expects {self.in_features}")
        y = matmul(x, self.weight)
        return y if self.bias is None else y + self.bias

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"
