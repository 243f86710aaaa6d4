"""The reverse-mode autodiff engine: ``core`` (Tensor, Function, backward, grad,
no_grad), the ops (see ``functional``) and the gradient checker."""
from tinydgm.autodiff.core import (Tensor, Function, tensor, as_tensor, no_grad, enable_grad,  # noqa: F401
                                   is_grad_enabled, grad, set_debug, is_debug)
from tinydgm.autodiff import functional  # noqa: F401
from tinydgm.autodiff.gradcheck import (gradcheck, gradgradcheck, jacobian,  # noqa: F401
                                        numerical_jacobian, GradcheckError, NotSmoothError,
                                        PrecisionError)
