"""A strict stand-in for CuPy, built on NumPy: the CUDA path, tested without a GPU.

With ``TINYDGM_CUDA_STANDIN=1`` in the environment, or inside
``with tinydgm.backend.cuda_standin():``, the device "cuda" is served by this module
instead of CuPy: ``backend.module_for_device("cuda")`` is ``standin.cupy``, device arrays
are ``standin.ndarray`` and ``tensor.device == "cuda"``. The test suite runs every
device-parametrised test on it (the ``cuda-standin`` parameter of the ``device`` and
``cuda_device`` fixtures in tests/conftest.py).

It behaves like CuPy where CuPy differs from NumPy in ways that break NumPy code:

- no implicit conversion to NumPy: ``numpy.asarray(a)``, NumPy functions and ufuncs
  called on a device array, and Numba kernels handed one raise TypeError with CuPy's
  message; only ``a.get()`` / ``asnumpy(a)`` (``backend.to_numpy``) convert;
- NumPy arrays are refused as operands (CuPy's "Unsupported type"); they reach the device
  only through ``asarray`` / ``array`` (always a copy, as a host-to-device transfer is),
  and as indices or assigned values, which CuPy also accepts;
- the namespace holds only names CuPy 13.6 has (an allow-list; ``errstate``, ``trapezoid``,
  ``cupy.random.Generator.normal`` ... are absent), ufunc methods only where CuPy has them
  (``add.at``, not ``multiply.at``; ``reduce`` for add and multiply), ``cupyx.scatter_add``,
  and cupy.random.Generator's methods; calls are checked against CuPy's signatures
  (``cupy_api.py``: no ``initial=`` or ``where=`` on reductions, no ``where=`` on ufuncs);
- reductions, single elements and NumPy-scalar results come back as 0-d device arrays;
  ``float(a)``, ``int(a)``, ``a.item()`` convert explicitly; there is no ``__index__``;
  only booleans and numbers live on the device (no strings or objects).

What it does not prove: CUDA numerics (GPU rounding, cuBLAS and cuRAND streams), speed,
memory limits or asynchrony; the real tests (``pytest -m cuda``) need a GPU. It is
stricter than CuPy in one place: CuPy dispatches NumPy functions called on its arrays
(NEP 13 and 18) where it has a twin, the stand-in refuses them, since tinydgm's rule is
``xp = backend.get_array_module(a)``.
"""
import types

import numpy

from tinydgm.standin import cupy_api

IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly.")
_SCALARS = (bool, int, float, complex, numpy.generic)


def _refuse_numpy(what):
    return TypeError(f"{IMPLICIT} (the CuPy stand-in: {what} on a device array; "
                     "use xp = backend.get_array_module(a) and xp's functions)")


def _unsupported(value):
    return TypeError(f"Unsupported type {type(value)}")


# ----------------------------------------------------------------------------- conversions

def _wrap(value):
    """NumPy results back onto the device: arrays and NumPy scalars become device arrays
    (0-d for scalars, as CuPy returns them); tuples and lists are wrapped item by item."""
    if isinstance(value, numpy.ndarray):
        return ndarray._of(value)
    if isinstance(value, numpy.generic):
        return ndarray._of(numpy.asarray(value))
    if isinstance(value, tuple):          # also namedtuples (SVDResult ...): CuPy returns plain tuples
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _operand(value):
    """A device array's NumPy buffer; NumPy arrays are refused, as CuPy refuses them."""
    if type(value) is ndarray:
        return value._a
    if isinstance(value, numpy.ndarray):
        raise _unsupported(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_operand(v) for v in value)
    return value


def _host_ok(value):
    """Like ``_operand`` where CuPy accepts host data too (indices, assigned values,
    asarray): NumPy arrays pass, copied so later host writes never reach the device."""
    if type(value) is ndarray:
        return value._a
    if isinstance(value, numpy.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_host_ok(v) for v in value)
    if isinstance(value, list):
        return [_host_ok(v) for v in value]
    return value


# ----------------------------------------------------------------------------- CuPy's signatures

def _parse(signature):
    """(positional names, keyword-only names, takes *args, takes **kwargs) of a cupy_api entry."""
    positional, keyword_only, varargs, varkw, seen_star = [], [], False, False, False
    for p in (p.strip() for p in signature.split(",") if p.strip()):
        if p == "**":
            varkw = True
        elif p == "*":
            seen_star = True
        elif p.startswith("*"):
            varargs = seen_star = True
        elif p != "/":
            (keyword_only if seen_star else positional).append(p.rstrip("="))
    return positional, keyword_only, varargs, varkw


_SIGNATURES = {}


def _check(where, name, table, args, kwargs):
    """Refuse what CuPy 13's signature of ``name`` does not take: unknown keywords (NumPy's
    ``where=``, ``initial=`` ...) or too many positional arguments."""
    signature = table.get(name)
    if signature is None:
        return
    parsed = _SIGNATURES.get((where, name))
    if parsed is None:
        parsed = _SIGNATURES[(where, name)] = _parse(signature)
    positional, keyword_only, varargs, varkw = parsed
    if len(args) > len(positional) and not varargs:
        raise TypeError(f"{where}{name}() takes {len(positional)} positional arguments on CuPy 13, "
                        f"{len(args)} were given (CuPy: {name}({signature}))")
    if not varkw:
        for key in kwargs:
            if key not in positional and key not in keyword_only:
                raise TypeError(f"{where}{name}() got an unexpected keyword argument {key!r}: CuPy 13 "
                                f"does not take it (CuPy: {name}({signature}))")


def _call(function, args, kwargs):
    """Call a NumPy function on device operands; ``out=`` keeps the caller's device array."""
    out = kwargs.get("out")
    result = function(*_operand(args), **{k: _operand(v) for k, v in kwargs.items()})
    if type(out) is ndarray:
        return out
    return _wrap(result)


# ----------------------------------------------------------------------------- the array

class _Flags:
    """What CuPy's ``ndarray.flags`` offers: c_contiguous, f_contiguous, owndata (no
    ``writeable``: CuPy arrays are always writeable)."""

    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, a):
        self.c_contiguous = bool(a.flags.c_contiguous)
        self.f_contiguous = bool(a.flags.f_contiguous)
        self.owndata = bool(a.flags.owndata)

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[name]


class MemoryPointer:
    """What ``a.data`` is on CuPy: a pointer to device memory, not the values."""

    def __init__(self, a):
        self.ptr = a.ctypes.data
        self.mem = None

    def __repr__(self):
        return f"<MemoryPointer 0x{self.ptr:x} (CuPy stand-in)>"


class Device:
    """What ``a.device`` is on CuPy: the CUDA device the array lives on (here always 0)."""

    id = 0

    def __repr__(self):
        return "<CUDA Device 0 (CuPy stand-in)>"

    def synchronize(self):
        pass


def _binary(name, reflected=False):
    op = getattr(numpy, name)

    def method(self, other):
        if type(other) is ndarray:
            other = other._a
        elif isinstance(other, numpy.ndarray):
            raise _unsupported(other)
        elif not isinstance(other, _SCALARS):
            return NotImplemented            # e.g. a Tensor: its reflected operator decides
        return _wrap(op(other, self._a) if reflected else op(self._a, other))
    return method


def _inplace(name):
    op = getattr(numpy, name)

    def method(self, other):
        if type(other) is ndarray:
            other = other._a
        elif isinstance(other, numpy.ndarray):
            raise _unsupported(other)
        elif not isinstance(other, _SCALARS):
            return NotImplemented
        op(self._a, other, out=self._a)
        return self
    return method


def _compare(name):
    op = getattr(numpy, name)

    def method(self, other):
        if type(other) is ndarray:
            other = other._a
        elif isinstance(other, numpy.ndarray) and other.ndim == 0:
            other = other.item()               # CuPy's workaround: a 0-d host array compares
        elif isinstance(other, numpy.ndarray):
            raise _unsupported(other)
        elif not isinstance(other, _SCALARS):
            return NotImplemented
        return _wrap(op(self._a, other))
    return method


def _unary(name):
    op = getattr(numpy, name)
    return lambda self: _wrap(op(self._a))


def _method(name):
    def method(self, *args, **kwargs):
        _check("cupy.ndarray.", name, cupy_api.METHODS, args, kwargs)
        return _call(getattr(self._a, name), args, kwargs)
    method.__name__ = name
    return method


class ndarray:
    """A device array: a NumPy array that never leaves the "device" implicitly."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, order="C"):
        self._a = numpy.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, a):
        self = object.__new__(cls)
        self._a = a
        return self

    # --- the refusals (CuPy raises the same TypeError from __array__)
    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT)

    def __array_function__(self, func, types, args, kwargs):
        raise _refuse_numpy(f"numpy.{func.__name__} called")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # a NumPy scalar's operator (np.float32(2) * a) reaches here: CuPy computes it
        if method == "__call__" and not kwargs and any(isinstance(x, numpy.generic) for x in inputs) \
                and all(type(x) is ndarray or isinstance(x, _SCALARS) for x in inputs):
            return _wrap(ufunc(*[x._a if type(x) is ndarray else x for x in inputs]))
        raise _refuse_numpy(f"numpy ufunc {ufunc.__name__}.{method} called")

    # --- explicit transfers
    def get(self, stream=None, order="C", out=None):
        """A NumPy copy (device to host)."""
        if out is not None:
            out[...] = self._a
            return out
        return numpy.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        """Copy the NumPy array ``arr`` into this array (host to device)."""
        if not isinstance(arr, numpy.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self._a.shape or arr.dtype != self._a.dtype:
            raise ValueError("Shape or dtype mismatch")
        self._a[...] = arr

    # --- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    data = property(lambda self: MemoryPointer(self._a))
    device = property(lambda self: Device())
    base = property(lambda self: None if self._a.base is None else ndarray._of(self._a.base))
    T = property(lambda self: ndarray._of(self._a.T))
    real = property(lambda self: ndarray._of(self._a.real))
    imag = property(lambda self: ndarray._of(self._a.imag))

    # --- conversions that CuPy allows (each synchronises with the device)
    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __bool__(self):
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec) if self._a.ndim else format(self._a.item(), spec)

    def __copy__(self):
        return ndarray._of(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray._of(self._a.copy())

    def __reduce__(self):
        return (_from_host, (self._a.copy(),))

    # --- indexing: host indices and values are allowed (CuPy copies them to the device)
    def __getitem__(self, key):
        return _wrap(self._a[_host_ok(key)])

    def __setitem__(self, key, value):
        self._a[_host_ok(key)] = _host_ok(value)

    # --- operators
    __add__, __radd__, __iadd__ = _binary("add"), _binary("add", True), _inplace("add")
    __sub__, __rsub__, __isub__ = _binary("subtract"), _binary("subtract", True), _inplace("subtract")
    __mul__, __rmul__, __imul__ = _binary("multiply"), _binary("multiply", True), _inplace("multiply")
    __truediv__, __rtruediv__, __itruediv__ = (_binary("true_divide"), _binary("true_divide", True),
                                               _inplace("true_divide"))
    __floordiv__, __rfloordiv__, __ifloordiv__ = (_binary("floor_divide"), _binary("floor_divide", True),
                                                  _inplace("floor_divide"))
    __mod__, __rmod__, __imod__ = _binary("remainder"), _binary("remainder", True), _inplace("remainder")
    __pow__, __rpow__, __ipow__ = _binary("power"), _binary("power", True), _inplace("power")
    __matmul__, __rmatmul__ = _binary("matmul"), _binary("matmul", True)
    __and__, __rand__, __iand__ = _binary("bitwise_and"), _binary("bitwise_and", True), _inplace("bitwise_and")
    __or__, __ror__, __ior__ = _binary("bitwise_or"), _binary("bitwise_or", True), _inplace("bitwise_or")
    __xor__, __rxor__, __ixor__ = _binary("bitwise_xor"), _binary("bitwise_xor", True), _inplace("bitwise_xor")
    __lshift__, __rlshift__ = _binary("left_shift"), _binary("left_shift", True)
    __rshift__, __rrshift__ = _binary("right_shift"), _binary("right_shift", True)
    __lt__, __le__, __gt__, __ge__ = _compare("less"), _compare("less_equal"), _compare("greater"), \
        _compare("greater_equal")
    __eq__, __ne__ = _compare("equal"), _compare("not_equal")
    __neg__, __pos__, __abs__, __invert__ = _unary("negative"), _unary("positive"), _unary("absolute"), \
        _unary("invert")

    def __divmod__(self, other):
        return self // other, self % other

    # --- methods CuPy's ndarray has (NumPy's behaviour, device results)
    for _name in ("all", "any", "argmax", "argmin", "argpartition", "argsort", "astype", "choose", "clip",
                  "compress", "conj", "conjugate", "copy", "cumprod", "cumsum", "diagonal", "dot", "fill",
                  "flatten", "max", "mean", "min", "nonzero", "partition", "prod", "put", "ravel",
                  "repeat", "reshape", "round", "searchsorted", "sort", "squeeze", "std", "sum", "swapaxes",
                  "take", "tobytes", "trace", "transpose", "var", "view"):
        locals()[_name] = _method(_name)
    del _name

    def item(self, *args):
        return self._a.item(*args)

    def tolist(self):
        return self._a.tolist()

    def ptp(self, axis=None, out=None, keepdims=False):
        return _wrap(numpy.ptp(self._a, axis=axis, keepdims=keepdims))

    def scatter_add(self, slices, value):
        _scatter("add", self, slices, value)

    def scatter_max(self, slices, value):
        _scatter("maximum", self, slices, value)

    def scatter_min(self, slices, value):
        _scatter("minimum", self, slices, value)


def _from_host(a):
    return ndarray._of(a)


def _scatter(name, target, slices, value):
    if type(target) is not ndarray:
        raise _unsupported(target)
    getattr(numpy, name).at(target._a, _host_ok(slices), _host_ok(value))


# ----------------------------------------------------------------------------- ufuncs

# CuPy 13: ufunc.at scatters for these (cupy/_core/_kernel.pyx, scatter_op); reduce and
# accumulate exist for add and multiply only, reduceat for add only.
_AT = {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"}
_REDUCE = {"add", "multiply"}


class ufunc:
    """A CuPy ufunc: call, ``outer``, and ``at``/``reduce``/``accumulate``/``reduceat``
    only where CuPy 13 implements them."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.__name__ = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        # matmul is a generalised ufunc on CuPy, with axes= and friends
        self._keywords = cupy_api.UFUNC_KEYWORDS + (("axes", "axis", "keepdims", "order")
                                                    if np_ufunc.__name__ == "matmul" else ())

    def __repr__(self):
        return f"<ufunc 'cupy_{self.__name__}' (CuPy stand-in)>"

    def __call__(self, *args, **kwargs):
        for key in kwargs:
            if key not in self._keywords:
                raise TypeError(f"cupy.{self.__name__}() got an unexpected keyword argument {key!r}: CuPy 13's "
                                f"ufuncs take only {', '.join(self._keywords)}")
        for x in args:
            if isinstance(x, (list, tuple)):
                raise _unsupported(x)
        return _call(self._u, args, kwargs)

    def outer(self, A, B, **kwargs):
        return _call(self._u.outer, (A, B), kwargs)

    def at(self, a, indices, b=None):
        if self.__name__ not in _AT:
            raise NotImplementedError(f"`cupy_{self.__name__}.at` is not supported yet")
        _scatter(self.__name__, a, indices, b)

    def _only(self, names, method):
        if self.__name__ not in names:
            raise NotImplementedError(f"`cupy_{self.__name__}.{method}` is not supported yet")
        return getattr(self._u, method)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        return _call(self._only(_REDUCE, "reduce"), (array,),
                     dict(axis=axis, dtype=dtype, out=out, keepdims=keepdims))

    def accumulate(self, array, axis=0, dtype=None, out=None):
        return _call(self._only(_REDUCE, "accumulate"), (array,), dict(axis=axis, dtype=dtype, out=out))

    def reduceat(self, array, indices, axis=0, dtype=None, out=None):
        return _call(self._only({"add"}, "reduceat"), (array, indices), dict(axis=axis, dtype=dtype, out=out))


# ----------------------------------------------------------------------------- the namespace

def _function(np_function, name, where="cupy.", table=cupy_api.FUNCTIONS):
    def function(*args, **kwargs):
        _check(where, name, table, args, kwargs)
        return _call(np_function, args, kwargs)
    function.__name__ = name
    function.__qualname__ = f"cupy.{name}"
    function.__doc__ = f"cupy.{name} (CuPy stand-in over numpy.{name})"
    return function


def _device_dtype(a):
    """CuPy holds booleans and numbers only: strings, objects and datetimes stay on the host."""
    if a.dtype.kind not in "biufc":
        raise ValueError(f"Unsupported dtype {a.dtype}")
    return ndarray._of(a)


def asarray(a, dtype=None, order=None, *, blocking=False):
    """Host data onto the device (always a copy, as a transfer is); device arrays are kept."""
    if type(a) is ndarray:
        return a if dtype is None or numpy.dtype(dtype) == a.dtype else ndarray._of(a._a.astype(dtype))
    return _device_dtype(numpy.array(_host_ok(a), dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if type(obj) is ndarray and not copy and (dtype is None or numpy.dtype(dtype) == obj.dtype) \
            and obj.ndim >= ndmin:
        return obj
    return _device_dtype(numpy.array(_host_ok(obj), dtype=dtype, order=order, ndmin=ndmin, copy=True))


def ascontiguousarray(a, dtype=None):
    return _device_dtype(numpy.ascontiguousarray(_host_ok(a), dtype=dtype))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """The explicit device-to-host copy (what ``backend.to_numpy`` calls)."""
    if type(a) is ndarray:
        return a.get(order=order, out=out)
    return numpy.asarray(a, order=order)


def get_array_module(*args):
    for a in args:
        if type(a) is ndarray:
            return cupy
    return numpy


# Names of CuPy 13.6's top-level namespace (cupy/__init__.py) that NumPy 2 still has; the
# stand-in offers exactly these (plus asnumpy, get_array_module, random, linalg, cuda).
_CUPY_NAMES = """
abs absolute add all allclose amax amin angle any append apply_along_axis arange arccos arccosh arcsin arcsinh
arctan arctan2 arctanh argmax argmin argpartition argsort argwhere around array_equal array_equiv array_repr
array_split array_str asanyarray asarray_chkfinite asfortranarray atleast_1d atleast_2d atleast_3d average
bartlett bincount bitwise_and bitwise_not bitwise_or bitwise_xor blackman bool_ broadcast_arrays
broadcast_shapes broadcast_to byte can_cast cbrt cdouble ceil choose clip column_stack common_type complex128
complex64 complexfloating compress concatenate conj conjugate convolve copy copysign copyto corrcoef correlate
cos cosh count_nonzero cov cross csingle cumprod cumsum deg2rad degrees delete diag diag_indices
diag_indices_from diagflat diagonal diff digitize divide divmod dot double dsplit dstack dtype e einsum empty
empty_like equal euler_gamma exp exp2 expand_dims expm1 extract eye fabs fill_diagonal finfo fix flatnonzero
flip fliplr flipud float16 float32 float64 float_power floating floor floor_divide fmax fmin fmod frexp full
full_like gcd generic gradient greater greater_equal half hamming hanning heaviside histogram hstack hypot i0
identity iinfo imag indices inexact inf inner int16 int32 int64 int8 int_ intc integer interp intersect1d intp
invert isclose iscomplex iscomplexobj isfinite isfortran isin isinf isnan isneginf isposinf isreal isrealobj
isscalar issubdtype kron lcm ldexp left_shift less less_equal lexsort linspace log log10 log1p log2 logaddexp
logaddexp2 logical_and logical_not logical_or logical_xor logspace longlong matmul max maximum mean median
meshgrid min min_scalar_type minimum mod modf moveaxis multiply nan nan_to_num nanargmax nanargmin nancumprod
nancumsum nanmax nanmean nanmedian nanmin nanprod nanstd nansum nanvar ndim negative newaxis nextafter nonzero
not_equal number ones ones_like outer packbits pad partition percentile pi piecewise place positive power
prod promote_types ptp put putmask quantile rad2deg radians ravel ravel_multi_index real real_if_close
reciprocal remainder repeat require reshape resize result_type right_shift rint roll rollaxis rot90 round
searchsorted select setdiff1d setxor1d shape shares_memory short sign signbit signedinteger sin sinc single
sinh size sort sort_complex split sqrt square squeeze stack std subtract sum swapaxes take take_along_axis tan
tanh tensordot tile trace transpose tri tril tril_indices tril_indices_from trim_zeros triu triu_indices
triu_indices_from true_divide trunc typename ubyte uint uint16 uint32 uint64 uint8 uintc uintp ulonglong
union1d unique unpackbits unravel_index unsignedinteger unwrap ushort vander var vdot vsplit vstack where zeros
zeros_like
""".split()

# CuPy's names that are host-side NumPy objects (types, constants, dtype routines): kept as
# NumPy's (CuPy borrows them from NumPy too).
_HOST = {"bool_", "byte", "cdouble", "complex128", "complex64", "complexfloating", "csingle", "double", "dtype",
         "e", "euler_gamma", "finfo", "float16", "float32", "float64", "floating", "generic", "half", "iinfo",
         "inexact", "inf", "int16", "int32", "int64", "int8", "int_", "intc", "integer", "intp", "longlong",
         "min_scalar_type", "nan", "newaxis", "number", "pi", "promote_types", "short", "signedinteger", "single",
         "typename", "ubyte", "uint", "uint16", "uint32", "uint64", "uint8", "uintc", "uintp", "ulonglong",
         "unsignedinteger", "ushort", "issubdtype"}
# Shape and dtype queries: device arrays are read through, without a transfer.
_QUERY = {"can_cast", "result_type", "common_type", "isscalar", "ndim", "shape", "size", "iscomplexobj",
          "isrealobj", "isfortran", "shares_memory"}

_CUPY_LINALG = ("cholesky det eigh eigvalsh inv lstsq matrix_power matrix_rank norm pinv qr slogdet solve svd "
                "tensorinv tensorsolve").split()


def _query(np_function, name):
    def function(*args, **kwargs):
        args = [a._a if type(a) is ndarray else a for a in args]
        return np_function(*args, **kwargs)
    function.__name__ = name
    return function


class _Namespace(types.ModuleType):
    """A module whose missing names say that CuPy lacks them (and where NumPy has them)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        where = getattr(self, "_numpy_twin", None)
        hint = (f"; numpy has {where.__name__}.{name} but CuPy 13 does not"
                if where is not None and hasattr(where, name) else "")
        raise AttributeError(f"module '{self.__name__}' has no attribute '{name}' (CuPy stand-in{hint})")


def _namespace(name, numpy_twin):
    module = _Namespace(name, f"The CuPy stand-in's {name} namespace (NumPy underneath).")
    module._numpy_twin = numpy_twin
    return module


cupy = _namespace("cupy", numpy)
for _name in _CUPY_NAMES:
    _np = getattr(numpy, _name, None)
    if _np is None:
        continue
    if _name in _HOST:
        setattr(cupy, _name, _np)
    elif _name in _QUERY:
        setattr(cupy, _name, _query(_np, _name))
    elif isinstance(_np, numpy.ufunc):
        setattr(cupy, _name, ufunc(_np))
    else:
        setattr(cupy, _name, _function(_np, _name))
for _f in (asarray, array, ascontiguousarray, asnumpy, get_array_module):
    setattr(cupy, _f.__name__, _f)
cupy.asanyarray = asarray
cupy.ndarray = ndarray
cupy.ufunc = ufunc

cupy.linalg = _namespace("cupy.linalg", numpy.linalg)
for _name in _CUPY_LINALG:
    setattr(cupy.linalg, _name, _function(getattr(numpy.linalg, _name), _name, "cupy.linalg.", cupy_api.LINALG))
cupy.linalg.LinAlgError = numpy.linalg.LinAlgError

cupy.lib = _namespace("cupy.lib", numpy.lib)
cupy.lib.stride_tricks = _namespace("cupy.lib.stride_tricks", numpy.lib.stride_tricks)
for _name in ("as_strided", "sliding_window_view"):
    setattr(cupy.lib.stride_tricks, _name, _function(getattr(numpy.lib.stride_tricks, _name), _name))

cupy.fft = _namespace("cupy.fft", numpy.fft)
for _name in ("fft ifft fft2 ifft2 fftn ifftn rfft irfft rfft2 irfft2 rfftn irfftn hfft ihfft fftfreq rfftfreq "
              "fftshift ifftshift").split():
    setattr(cupy.fft, _name, _function(getattr(numpy.fft, _name), _name))

cupyx = _namespace("cupyx", None)
cupyx.scatter_add = lambda a, slices, value: _scatter("add", a, slices, value)
cupyx.scatter_max = lambda a, slices, value: _scatter("maximum", a, slices, value)
cupyx.scatter_min = lambda a, slices, value: _scatter("minimum", a, slices, value)


# ----------------------------------------------------------------------------- cupy.random

def _float_dtype(dtype, method):
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"Generator.{method}: dtype must be float32 or float64, got {dtype}")
    return dtype


def _size(size):
    return () if size is None else size


class Generator:
    """cupy.random.Generator's API (CuPy 13): no ``normal``, ``choice``, ``permutation`` or
    ``shuffle``; ``random``, ``uniform`` and ``standard_normal`` take a float dtype; draws
    are device arrays (0-d when ``size`` is None). NumPy's PCG64 draws underneath, so the
    streams differ from cuRAND's (a seed is repeatable, not portable)."""

    def __init__(self, bit_generator):
        self._g = numpy.random.Generator(bit_generator)

    def _out(self, values, out=None):
        if out is not None and type(out) is not ndarray:
            raise TypeError(f"Argument 'out' has incorrect type (expected cupy.ndarray, got {type(out).__name__})")
        if out is not None:
            out._a[...] = values
            return out
        return ndarray._of(numpy.asarray(values))

    def random(self, size=None, dtype=numpy.float64, out=None):
        return self._out(self._g.random(_size(size), dtype=_float_dtype(dtype, "random")), out)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=numpy.float64):
        dtype = _float_dtype(dtype, "uniform")
        return self._out(self._g.uniform(_operand(low), _operand(high), size).astype(dtype))

    def standard_normal(self, size=None, dtype=numpy.float64, out=None):
        return self._out(self._g.standard_normal(_size(size), dtype=_float_dtype(dtype, "standard_normal")), out)

    def standard_exponential(self, size=None, dtype=numpy.float64, method="zig", out=None):
        return self._out(self._g.standard_exponential(_size(size), dtype=_float_dtype(dtype, "standard_exponential")),
                         out)

    def integers(self, low, high=None, size=None, dtype=numpy.int64, endpoint=False):
        return self._out(self._g.integers(_operand(low), _operand(high), size, dtype=dtype, endpoint=endpoint))

    def _draw(name):
        def method(self, *args, **kwargs):
            _check("cupy.random.Generator.", name, cupy_api.GENERATOR, args, kwargs)
            return self._out(getattr(self._g, name)(*_operand(args), **_operand(kwargs)))
        method.__name__ = name
        return method

    for _name in ("beta", "binomial", "chisquare", "dirichlet", "exponential", "f", "gamma", "geometric",
                  "hypergeometric", "logseries", "poisson", "power", "standard_gamma"):
        locals()[_name] = _draw(_name)
    del _name, _draw


def default_rng(seed=None):
    """cupy.random.default_rng: a Generator from a seed (or the Generator itself)."""
    if isinstance(seed, Generator):
        return seed
    return Generator(numpy.random.PCG64(seed))


cupy.random = _namespace("cupy.random", numpy.random)
cupy.random.default_rng = default_rng
cupy.random.Generator = Generator


# ----------------------------------------------------------------------------- cupy.cuda

cupy.cuda = _namespace("cupy.cuda", None)
cupy.cuda.runtime = _namespace("cupy.cuda.runtime", None)
cupy.cuda.runtime.getDeviceCount = lambda: 1
cupy.cuda.runtime.getDeviceProperties = lambda i: {"name": b"CuPy stand-in (NumPy on the CPU)"}
cupy.cuda.Device = lambda device=0: Device()
cupy.is_available = lambda: True

del _name, _np, _f
__all__ = ["cupy", "cupyx", "ndarray", "IMPLICIT"]
