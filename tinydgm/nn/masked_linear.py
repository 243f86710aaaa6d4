"""MADE masks and the masked dense layer (Germain et al. 2015, "MADE: Masked Autoencoder
for Distribution Estimation"; intro lecture part III, "Masked Autoencoder for
Distribution Estimation").

An autoencoder becomes an autoregressive model p(x) = prod_d p(x_d | x_<d) when every
output d is cut off from the inputs that come at or after d in the ordering. MADE does
it with binary masks on the weights, built from one integer per unit:

    m^0(d) in {1, ..., D}         the input ordering: x_d is the m^0(d)-th variable
    m^l(k) in {min_k' m^{l-1}(k'), ..., D - 1}
                                  hidden unit k of layer l sees inputs with m^0 <= m^l(k)

    hidden mask   M^l[k', k] = 1[m^l(k) >= m^{l-1}(k')]
    output mask   M^V[k, d]  = 1[m^0(d) > m^L(k)]               (strict)
    direct mask   M^A[d', d] = 1[m^0(d) > m^0(d')]              (input -> output connections)

written here in the (in, out) layout of ``Linear`` (y = x (W * M) + b), so M^l has shape
(units of layer l-1, units of layer l). A path from input d' to output d exists only if
m^0(d') <= m^1 <= ... <= m^L < m^0(d): output d depends on x_<d only.

A 3-input example (natural ordering, one hidden layer of 4 units, degrees in brackets)::

    outputs   p(x1)          p(x2 | x1)       p(x3 | x1, x2)
              sees nothing   sees h1, h3      sees h1, h2, h3, h4     M^V: m^0(d) > m^1(k)
    hidden    h1 [1]    h2 [2]    h3 [1]    h4 [2]
              sees x1   x1, x2    x1        x1, x2                    M^1: m^1(k) >= m^0(d)
    inputs    x1 [1]    x2 [2]    x3 [3]

    M^1 (in=3, out=4)     M^V (in=4, out=3)
          h1 h2 h3 h4            p1 p2 p3
      x1 [ 1  1  1  1]       h1 [ 0  1  1]
      x2 [ 0  1  0  1]       h2 [ 0  0  1]
      x3 [ 0  0  0  0]       h3 [ 0  1  1]
                             h4 [ 0  0  1]

x3 feeds nothing (no output depends on the last variable) and p(x1) sees no input: its
output is a learned constant (the bias), the unconditional p(x1).

``MADEMasks`` owns the orderings and degrees and resamples them between minibatches for
order-agnostic and connectivity-agnostic training (sec. 4): a fixed set of K masks
cycled through (or drawn from), or a fresh draw every time. The MADE model itself lives
in ``tinydgm.models``; this module is the layer and mask toolkit.
"""
import operator

from tinydgm import backend
from tinydgm.autodiff.core import Tensor
from tinydgm.autodiff.linalg import matmul
from tinydgm.nn.linear import Linear

__all__ = ["made_degrees", "made_masks", "check_degrees", "MaskedLinear", "MADEMasks"]


def _cpu():
    """The CPU array module: masks and degrees are small structure, built on the CPU."""
    return backend.module_for_device("cpu")


def _gen(rng):
    return backend.default_generator() if rng is None else rng


def _positive_int(value, name, who):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{who}: {name} must be an int, got {value!r}") from None
    if isinstance(value, bool) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")
    return value


# ----------------------------------------------------------------------------- degrees

def _input_ordering(n_inputs, ordering, rng):
    """m^0: "natural" (1, ..., D), "random" (a uniform permutation) or a given permutation."""
    xp = _cpu()
    if isinstance(ordering, str):
        if ordering == "natural":
            return xp.arange(1, n_inputs + 1)
        if ordering == "random":
            return _gen(rng).permutation(n_inputs) + 1
        raise ValueError(f'made_degrees: ordering must be "natural", "random" or a permutation of '
                         f'1..{n_inputs}, got {ordering!r}')
    m0 = xp.asarray(backend.to_numpy(ordering.data if isinstance(ordering, Tensor) else ordering))
    if m0.shape != (n_inputs,) or m0.dtype.kind not in "iu" or \
            not bool((xp.sort(m0) == xp.arange(1, n_inputs + 1)).all()):
        raise ValueError(f"made_degrees: an explicit ordering must be a permutation of 1..{n_inputs} "
                         f"(integers, shape ({n_inputs},)), got {m0.tolist()!r}")
    return m0.astype(xp.int64)


def _hidden_degrees(n_inputs, n_units, low, connectivity, rng, layer):
    """m^l for one hidden layer, each in {low, ..., D - 1}.

    "random": uniform on that range (Germain et al. sec. 4). "natural": evenly spread,
    m^l(k) = low + (k mod (D - low)), so every degree appears floor or ceil of
    H / (D - low) times (the deterministic pattern of nflows' MaskedLinear).
    """
    xp = _cpu()
    high = n_inputs - 1
    if connectivity == "natural":
        if n_units < high - low + 1:
            raise ValueError(
                f"made_degrees: natural connectivity needs at least D - {low} = {high - low + 1} units in "
                f"hidden layer {layer} (D = {n_inputs} inputs), got {n_units}: with fewer, the degrees "
                f"above {low + n_units - 1} never occur and the last outputs would silently lose inputs. "
                'Use more units or connectivity="random"')
        return low + xp.arange(n_units) % (high - low + 1)
    if connectivity == "random":
        return _gen(rng).integers(low, high + 1, size=n_units)
    raise ValueError(f'made_degrees: connectivity must be "natural" or "random", got {connectivity!r}')


def made_degrees(n_inputs, hidden_sizes, ordering="natural", connectivity="natural", rng=None):
    """The MADE degrees [m^0, m^1, ..., m^L] as CPU integer arrays (Germain et al. sec. 3).

    m^0 (shape (D,)) is the input ordering with values 1..D: "natural" (x_1 first),
    "random" (a uniform permutation) or an explicit permutation of 1..D.
    m^l (shape (hidden_sizes[l-1],)) are the hidden degrees in
    {min_k' m^{l-1}(k'), ..., D - 1}: "random" connectivity draws them uniformly (sec. 4),
    "natural" spreads them evenly and raises ValueError for a layer with fewer than
    D - min units (the pattern would leave degrees out). With D = 1 the range is empty and
    hidden degrees are 0: the units see no input and p(x_1) is unconditional.

    rng: a NumPy Generator (the default generator when None), used for the random choices.
    """
    n_inputs = _positive_int(n_inputs, "n_inputs", "made_degrees")
    if not isinstance(hidden_sizes, (list, tuple)):
        raise TypeError(f"made_degrees: hidden_sizes must be a list or tuple of layer widths, got {hidden_sizes!r}")
    hidden_sizes = [_positive_int(h, f"hidden_sizes[{i}]", "made_degrees") for i, h in enumerate(hidden_sizes)]
    degrees = [_input_ordering(n_inputs, ordering, rng)]
    for layer, n_units in enumerate(hidden_sizes, 1):
        low = min(int(degrees[-1].min()), n_inputs - 1)     # m^l >= min m^{l-1}: no unit is useless
        degrees.append(_hidden_degrees(n_inputs, n_units, low, connectivity, rng, layer))
    return degrees


def check_degrees(degrees, n_inputs=None, hidden_sizes=None, who="check_degrees"):
    """Validate given degrees [m^0, m^1, ..., m^L] and return them as CPU int64 arrays.

    m^0 must be a permutation of 1..D; each m^l (l >= 1) holds integers in {0, ..., D - 1}
    (a unit of degree k sees inputs with m^0 <= k; 0 sees none). Arrays, lists, Tensors or
    foreign tensors are accepted. n_inputs / hidden_sizes, when given, must match.
    """
    xp = _cpu()
    if not isinstance(degrees, (list, tuple)) or len(degrees) < 1:
        raise ValueError(f"{who}: degrees must be a list [m^0, m^1, ..., m^L] of integer arrays, got {degrees!r}")
    out = []
    for l, m in enumerate(degrees):
        if isinstance(m, Tensor):
            m = m.numpy()
        elif hasattr(m, "detach") and hasattr(m, "cpu"):     # a torch tensor
            m = m.detach().cpu().numpy()
        m = xp.asarray(backend.to_numpy(m) if backend.is_array(m) else m)
        if m.ndim != 1 or (m.size and m.dtype.kind not in "iu"):
            raise ValueError(f"{who}: degrees[{l}] must be a 1-D integer array, got shape {m.shape} and dtype "
                             f"{m.dtype}")
        out.append(m.astype(xp.int64))
    d = len(out[0])
    if n_inputs is not None and d != n_inputs:
        raise ValueError(f"{who}: m^0 has {d} entries but the model has n_inputs = {n_inputs}")
    if not bool((xp.sort(out[0]) == xp.arange(1, d + 1)).all()):
        raise ValueError(f"{who}: m^0 (degrees[0]) must be a permutation of 1..{d}, got {out[0].tolist()}")
    for l, m in enumerate(out[1:], 1):
        if m.size and (int(m.min()) < 0 or int(m.max()) > max(d - 1, 0)):
            raise ValueError(f"{who}: hidden degrees m^{l} must lie in 0..{max(d - 1, 0)} (D = {d}), got values "
                             f"from {int(m.min())} to {int(m.max())}")
    if hidden_sizes is not None and [len(m) for m in out[1:]] != list(hidden_sizes):
        raise ValueError(f"{who}: hidden degrees have sizes {[len(m) for m in out[1:]]} but the hidden layers "
                         f"have {list(hidden_sizes)}")
    return out


# ----------------------------------------------------------------------------- masks

def made_masks(degrees, direct=False, outputs_per_input=1):
    """Masks (boolean CPU arrays, (in, out) layout) from degrees [m^0, ..., m^L].

    Returns ``(masks, direct_mask)``:
      masks = [M^1, ..., M^L, M^V], M^l[k', k] = 1[m^l(k) >= m^{l-1}(k')] of shape
              (H_{l-1}, H_l), and the output mask M^V[k, d] = 1[m^0(d) > m^L(k)] of shape
              (H_L, outputs_per_input * D);
      direct_mask = M^A[d', d] = 1[m^0(d) > m^0(d')] of shape (D, outputs_per_input * D)
              when ``direct`` (input-to-output connections), else None.

    outputs_per_input = K > 1 repeats the output columns K times, in blocks: columns
    [k D, (k + 1) D) are the k-th parameter of every conditional (e.g. K = 2 for a
    Gaussian's mean and log-scale: ``mu, log_scale = split(y, 2, axis=-1)``).
    With no hidden layers, masks = [M^V] with M^V built from m^0 itself (= M^A).
    """
    if len(degrees) < 1:
        raise ValueError("made_masks: degrees must hold at least the input ordering m^0")
    k = _positive_int(outputs_per_input, "outputs_per_input", "made_masks")
    xp = _cpu()
    m0 = degrees[0]
    masks = [m[None, :] >= m_prev[:, None] for m_prev, m in zip(degrees[:-1], degrees[1:])]
    masks.append(xp.tile(m0[None, :] > degrees[-1][:, None], (1, k)))
    direct_mask = xp.tile(m0[None, :] > m0[:, None], (1, k)) if direct else None
    return masks, direct_mask


# ----------------------------------------------------------------------------- layer

class MaskedLinear(Linear):
    """y = x (W * M) + b: a dense layer whose weight W (in_features, out_features) is
    multiplied elementwise by a fixed binary mask M of the same shape (Germain et al.
    sec. 3). M is a buffer (saved in the state dict, not trained), all ones by
    default; ``set_mask`` replaces it (e.g. with ``MADEMasks`` between minibatches).

    The masked entries of W receive zero gradient (d y / d W = x^T g * M) and keep their
    values, so a connection switched off and on again by resampling resumes where it was.
    Initialisation as ``Linear`` (U(+-1/sqrt(in_features)), or zeros with ``zero_init``).
    """

    def __init__(self, in_features, out_features, mask=None, bias=True, zero_init=False, rng=None,
                 dtype=None, device=None):
        super().__init__(in_features, out_features, bias=bias, zero_init=zero_init, rng=rng, dtype=dtype,
                         device=device)
        if mask is None:
            mask = backend.ones_like(self.weight.data)
        self.set_mask(mask)

    def set_mask(self, mask):
        """Use ``mask`` (binary, shape (in_features, out_features); bool or numbers, any
        device, or a Tensor) from now on; stored in the weight's dtype and device."""
        data = mask.data if isinstance(mask, Tensor) else mask
        if not backend.is_array(data):
            data = backend.as_array(data)
        expected = (self.in_features, self.out_features)
        if tuple(data.shape) != expected:
            raise ValueError(f"MaskedLinear({self.in_features}, {self.out_features}): mask must have shape "
                             f"(in_features, out_features) = {expected}, got {tuple(data.shape)}"
                             + (" (transposed? tinydgm's dense layout is (in, out))"
                                if tuple(data.shape) == expected[::-1] else ""))
        data = backend.to_device(data, self.weight.device).astype(self.weight.dtype)
        if not bool(((data == 0) | (data == 1)).all()):
            raise ValueError(f"MaskedLinear({self.in_features}, {self.out_features}): mask entries must be "
                             "0 or 1")
        self.register_buffer("mask", data)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MaskedLinear: input has {x.shape[-1]} features (shape {x.shape}) but the "
                             f"layer expects {self.in_features}")
        y = matmul(x, self.weight * Tensor(self.mask))      # the mask is a constant: no gradient
        return y if self.bias is None else y + self.bias

    def extra_repr(self):
        return super().extra_repr() + f", connections={int(self.mask.sum())}"


# ----------------------------------------------------------------------------- mask sets

class MADEMasks:
    """The orderings and connectivities of a MADE, resampled for order- and
    connectivity-agnostic training (Germain et al. sec. 4).

        masks = MADEMasks(784, [500, 500], ordering="random", connectivity="random", n_masks=32)
        layers = [MaskedLinear(784, 500), MaskedLinear(500, 500), MaskedLinear(500, 784)]
        masks.apply(layers)
        for batch in data:
            ...                                   # loss, step
            masks.resample(); masks.apply(layers) # next mask set for the next minibatch

    n_masks = K: K degree sets are drawn once, at construction; ``resample()`` cycles
    through them in order and ``resample(rng)`` picks one uniformly with ``rng``;
    ``select(i)`` picks set i (e.g. to average p(x) over the K masks at test time, an
    ensemble that shares parameters). n_masks = None: every ``resample`` draws a new set
    (with ``rng`` or the generator given at construction).

    A "natural" ordering/connectivity stays fixed; "random" ones vary between sets; an
    explicit ordering array is kept in every set. Attributes: ``degrees``
    ([m^0, ..., m^L]), ``ordering`` (m^0), ``masks`` and ``direct_mask`` as in
    ``made_masks`` (CPU boolean arrays), ``index`` (the current set, None without a
    fixed set).
    """

    def __init__(self, n_inputs, hidden_sizes, ordering="natural", connectivity="natural", direct=False,
                 outputs_per_input=1, n_masks=None, rng=None):
        self.n_inputs = _positive_int(n_inputs, "n_inputs", "MADEMasks")
        self.hidden_sizes = tuple(hidden_sizes)
        self.ordering_rule, self.connectivity = ordering, connectivity
        self.direct, self.outputs_per_input = direct, outputs_per_input
        self.rng = _gen(rng)
        self.n_masks = None if n_masks is None else _positive_int(n_masks, "n_masks", "MADEMasks")
        if self.n_masks is None:
            self._sets, self.index = None, None
            self._use(self._draw(self.rng))
        else:
            self._sets = [self._draw(self.rng) for _ in range(self.n_masks)]
            self.select(0)

    @classmethod
    def from_degrees(cls, degrees, direct=False, outputs_per_input=1):
        """One fixed mask set built from given degrees [m^0, ..., m^L] (e.g. another
        implementation's), validated by ``check_degrees``; it never resamples."""
        degrees = check_degrees(degrees, who="MADEMasks.from_degrees")
        masks = cls.__new__(cls)
        masks.n_inputs, masks.hidden_sizes = len(degrees[0]), tuple(len(m) for m in degrees[1:])
        masks.ordering_rule, masks.connectivity = degrees[0], "given"
        masks.direct, masks.outputs_per_input = direct, outputs_per_input
        masks.rng, masks.n_masks = _gen(None), 1
        masks._sets = [degrees]
        masks.select(0)
        return masks

    @property
    def sets(self):
        """The degree sets [[m^0, ..., m^L], ...]: the K fixed ones, or just the current one
        when every resample draws afresh (n_masks=None)."""
        return list(self._sets) if self._sets is not None else [self.degrees]

    def restore(self, sets, index):
        """Use the given degree sets (as ``sets`` returns them) and make set ``index`` current:
        what a loaded state dict holds. The sizes must match this MADEMasks'."""
        sets = [check_degrees(list(s), self.n_inputs, self.hidden_sizes, "MADEMasks.restore") for s in sets]
        if self._sets is None:
            if len(sets) != 1:
                raise ValueError(f"MADEMasks.restore: {len(sets)} degree sets for masks that draw afresh at every "
                                 "resample (n_masks=None), which keep only the current one")
            self._use(sets[0])
            return self
        if len(sets) != self.n_masks:
            raise ValueError(f"MADEMasks.restore: {len(sets)} degree sets but n_masks = {self.n_masks}")
        self._sets = sets
        return self.select(index)

    def _draw(self, rng):
        return made_degrees(self.n_inputs, self.hidden_sizes, self.ordering_rule, self.connectivity, rng)

    def _use(self, degrees):
        self.degrees = degrees
        self.masks, self.direct_mask = made_masks(degrees, self.direct, self.outputs_per_input)

    @property
    def ordering(self):
        """m^0: x_d is the m^0(d)-th variable of the current ordering."""
        return self.degrees[0]

    def select(self, index):
        """Use mask set ``index`` of the fixed set."""
        if self._sets is None:
            raise ValueError("MADEMasks.select: there is no fixed set of masks (n_masks=None)")
        if not 0 <= index < self.n_masks:
            raise IndexError(f"MADEMasks.select: index {index} out of range for {self.n_masks} mask sets")
        self.index = index
        self._use(self._sets[index])
        return self

    def resample(self, rng=None):
        """Move to the next mask set: the next of the K (or a uniform pick with ``rng``),
        or a fresh draw when n_masks is None."""
        if self._sets is None:
            self._use(self._draw(_gen(rng) if rng is not None else self.rng))
        elif rng is None:
            self.select((self.index + 1) % self.n_masks)
        else:
            self.select(int(rng.integers(self.n_masks)))
        return self

    def apply(self, layers, direct_layer=None):
        """Set the masks of ``layers`` (the L + 1 MaskedLinear layers, input to output) and
        of ``direct_layer`` (the input-to-output MaskedLinear, when ``direct``)."""
        layers = list(layers)
        if len(layers) != len(self.masks):
            raise ValueError(f"MADEMasks.apply: {len(self.masks)} masks (hidden sizes {list(self.hidden_sizes)} "
                             f"and the output) but {len(layers)} layers")
        for layer, mask in zip(layers, self.masks):
            layer.set_mask(mask)
        if direct_layer is not None:
            if self.direct_mask is None:
                raise ValueError("MADEMasks.apply: a direct layer was given but the masks were built with "
                                 "direct=False")
            direct_layer.set_mask(self.direct_mask)
        return self
