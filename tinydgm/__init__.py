"""tinydgm: deep generative models on a small, gradient-checked autodiff engine.

    import tinydgm as td
    x = td.tensor([[1.0, 2.0]], requires_grad=True)
    y = td.softplus(x @ x.T).sum()
    y.backward()                                  # x.grad
    td.gradcheck(lambda x: td.softplus(x @ x.T), [x])
"""
from tinydgm import backend  # noqa: F401
from tinydgm.backend import (cuda_available, default_dtype, get_default_dtype,  # noqa: F401
                             set_default_dtype, rng, seed, get_array_module)
from tinydgm.autodiff import (Tensor, Function, tensor, as_tensor, no_grad, enable_grad,  # noqa: F401
                              is_grad_enabled, grad, set_debug, is_debug, gradcheck, gradgradcheck,
                              jacobian, numerical_jacobian, GradcheckError, NotSmoothError,
                              PrecisionError, functional)
from tinydgm.autodiff.functional import *  # noqa: F401,F403
from tinydgm.threads import set_num_threads, get_num_threads, num_threads  # noqa: F401

__version__ = "0.1.0"

# The toolkit packages load on first use (td.nn, td.optim, ...), so `import tinydgm` stays
# light (no Matplotlib, no Numba compilation) for users of the engine alone.
_SUBMODULES = ("nn", "optim", "distributions", "data", "train", "checkpoint", "plot", "kernels", "models",
               "evaluate", "testing", "interop")


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib
        return importlib.import_module(f"tinydgm.{name}")
    raise AttributeError(f"module 'tinydgm' has no attribute {name!r}")
