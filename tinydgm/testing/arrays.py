"""Host arrays for the checks: the contracts accept NumPy/CuPy arrays, Tensors, lists and
other frameworks' tensors (values only) and do their bookkeeping in NumPy on the CPU."""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor

__all__ = ["cpu", "host"]


def cpu():
    """The CPU array module (the checks' bookkeeping is small and lives on the host)."""
    return backend.module_for_device("cpu")


def host(a):
    """A NumPy array of the values of ``a``: a Tensor, a backend array, a torch tensor
    (detached: its values, without importing torch) or array-like data."""
    if isinstance(a, Tensor):
        return a.numpy()
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu()
    return backend.to_numpy(a) if backend.is_array(a) else cpu().asarray(a)
