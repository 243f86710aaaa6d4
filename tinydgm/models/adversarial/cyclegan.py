"""CycleGAN: unpaired translation between two domains X and Y (Zhu et al. 2017, "Unpaired
Image-to-Image Translation using Cycle-Consistent Adversarial Networks"; intro lecture part I,
"Unpaired image-to-image translation").

Two generators and two discriminators, trained on samples of each domain that are never paired:

    G: X -> Y,   F: Y -> X,   D_Y tells real y from G(x),   D_X tells real x from F(y)

The lecture's two points: 1. the discriminators make each translation look like the other
domain; 2. the cycle-consistency loss keeps the translations aligned. An adversarial loss
alone is met by any map onto the other domain's distribution (every x could go to the same
plausible y); asking F(G(x)) ~ x and G(F(y)) ~ y leaves the invertible maps.

Objective (Zhu et al., eq. 1-3), G and F minimise it, D_X and D_Y maximise the GAN terms:

    L(G, F, D_X, D_Y) = L_GAN(G, D_Y, X, Y) + L_GAN(F, D_X, Y, X) + lambda L_cyc(G, F)
    L_cyc(G, F)       = E_x[||F(G(x)) - x||_1] + E_y[||G(F(y)) - y||_1]

with the least-squares GAN losses of the paper's implementation (sec. 4; Mao et al. 2017):

    discriminator D_Y minimises   E_y[(D_Y(y) - 1)^2] + E_x[D_Y(G(x))^2]
    generator G minimises         E_x[(D_Y(G(x)) - 1)^2]

and likewise for F and D_X. One training step (the authors' code): the generators' update
on the whole objective with both discriminators frozen, then each discriminator's update on
the translations of that step (without graph).

Implementation choices: ||.||_1 is averaged over a sample's entries (the authors' code's mean
absolute error, the scale at which lambda = 10 was chosen); no pool of 50 past translations
for the discriminators (sec. 4) and no identity loss (which the paper adds for some tasks).

Batches: ``train_step((x, y))`` takes one batch of each domain; when both domains have the
same shape a single (N, 2, *shape) batch may be given instead, x = batch[:, 0],
y = batch[:, 1] (the losses only average over x's and over y's, never pair them, so rows are
as unpaired as separate batches).
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import abs as abs_
from tinydgm.autodiff.elementwise import relu, sigmoid
from tinydgm.autodiff.reduce import mean
from tinydgm.data.transforms import as_generator
from tinydgm.models.adversarial.gan import _eval_mode, _frozen, _short
from tinydgm.models.adversarial.toy_networks import MLPGenerator
from tinydgm.nn.conv import Conv2d
from tinydgm.nn.module import Module, ModuleList
from tinydgm.optim import Adam, Optimizer

__all__ = ["CycleGAN", "ResidualMLP", "ConvTranslator", "cycle_consistency_loss", "least_squares_discriminator_loss",
           "least_squares_generator_loss"]


def _check_scores(scores, who, name):
    if not isinstance(scores, Tensor):
        raise TypeError(f"{who}: {name} must be a Tensor, got {type(scores).__name__}")
    if scores.ndim != 1:
        raise ValueError(f"{who}: {name} must have shape (N,), one output per example, got shape {scores.shape}")


def least_squares_discriminator_loss(real_scores, fake_scores):
    """E[(D(real) - 1)^2] + E[D(fake)^2] (Mao et al. 2017; Zhu et al. 2017, sec. 4): the
    discriminator pushes real scores to 1 and translated ones to 0. Scores (N,), 0-d result."""
    _check_scores(real_scores, "least_squares_discriminator_loss", "real_scores")
    _check_scores(fake_scores, "least_squares_discriminator_loss", "fake_scores")
    return mean((real_scores - 1) ** 2) + mean(fake_scores ** 2)


def least_squares_generator_loss(fake_scores):
    """E[(D(fake) - 1)^2]: the generator wants its translations scored as real."""
    _check_scores(fake_scores, "least_squares_generator_loss", "fake_scores")
    return mean((fake_scores - 1) ** 2)


def cycle_consistency_loss(x, x_cycled, y, y_cycled):
    """L_cyc = E_x ||F(G(x)) - x||_1 + E_y ||G(F(y)) - y||_1 (Zhu et al., eq. 2), each norm
    averaged over a sample's entries: mean |x_cycled - x| + mean |y_cycled - y| (0-d)."""
    for name, a, b in (("x_cycled", x_cycled, x), ("y_cycled", y_cycled, y)):
        if a.shape != b.shape:
            raise ValueError(f"cycle_consistency_loss: {name} has shape {a.shape}, the data {b.shape}")
    return mean(abs_(x_cycled - x)) + mean(abs_(y_cycled - y))


class ResidualMLP(Module):
    """A translator for vectors, y = x + MLP(x) (Linear-ReLU stack, linear output), whose last
    layer starts at zero: the map starts as the identity (the paper's generators have residual
    blocks too: a translation changes an example rather than redrawing it). With an identity start the cycle loss is met from the first step, so lambda must leave
    the adversarial terms room to move the map (lambda = 1 on the 2-D toys of the tests)."""

    def __init__(self, dim=2, hidden=(32, 32), rng=None, dtype=None, device=None):
        super().__init__()
        self.dim = dim
        self.net = MLPGenerator(dim, dim, hidden, rng=rng, dtype=dtype, device=device)
        last = self.net.layers[-1]
        last.weight.data = last.weight.data * 0
        last.bias.data = last.bias.data * 0

    def forward(self, x):
        return x + self.net(x)

    def extra_repr(self):
        return f"x + MLP({self.net.extra_repr()})"


class ConvTranslator(Module):
    """A translator for images (N, C, H, W) with pixels in [0, 1]: ``n_layers`` 3 x 3
    convolutions of ``channels`` maps with ReLU, a last 3 x 3 convolution to C channels and a
    sigmoid. The paper's generator (strided convolutions, residual blocks, transposed
    convolutions, tanh) cut down to what 28 x 28 digits need: each output pixel sees a
    (2 n_layers + 3)-pixel square around it, enough for per-pixel maps such as 1 - x and for
    local stroke changes, and every map is the same at every position."""

    def __init__(self, in_channels=1, channels=16, n_layers=2, rng=None, dtype=None, device=None):
        super().__init__()
        kw = dict(rng=rng, dtype=dtype, device=device)
        widths = [in_channels] + [channels] * n_layers
        self.hidden = ModuleList(Conv2d(a, b, 3, padding=1, **kw) for a, b in zip(widths[:-1], widths[1:]))
        self.out = Conv2d(widths[-1], in_channels, 3, padding=1, **kw)
        self.in_channels, self.channels, self.n_layers = in_channels, channels, n_layers

    def forward(self, x):
        h = x
        for conv in self.hidden:
            h = relu(conv(h))
        return sigmoid(self.out(h))

    def extra_repr(self):
        return f"{self.in_channels} -> {self.n_layers} x [3x3 conv {self.channels}, ReLU] -> 3x3 conv, sigmoid"


def _check_module(who, name, module):
    if not isinstance(module, Module):
        raise TypeError(f"{who}: {name} must be a Module, got {type(module).__name__}")


def _shape(who, name, shape):
    shape = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else tuple(shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"{who}: {name} must be a positive int or a tuple of them, got {shape!r}")
    return shape


class CycleGAN(Module):
    """G: X -> Y and F: Y -> X trained against D_Y and D_X with cycle consistency.

    generator_xy (G), generator_yx (F): Modules mapping a batch of one domain to the other.
    discriminator_x (D_X), discriminator_y (D_Y): Modules mapping a batch of their domain to
        one score per example, (N,) or (N, 1).
    x_shape, y_shape: the shape of one example of X and of Y (y_shape defaults to x_shape).
    lambda_cycle: lambda, the weight of L_cyc (10 in the paper).
    lr, betas: Adam for both generators (one optimizer) and both discriminators (another),
        when none are given: the paper's 2e-4, (0.5, 0.999).
    rng: unused by the losses (no noise); kept for the protocol's ``model.rng``.

    The four networks are checked against the shapes at construction, with clear errors.
    """

    def __init__(self, generator_xy, generator_yx, discriminator_x, discriminator_y, x_shape, y_shape=None, *,
                 lambda_cycle=10.0, lr=2e-4, betas=(0.5, 0.999), g_optimizer=None, d_optimizer=None, rng=None):
        super().__init__()
        who = "CycleGAN"
        for name, module in (("generator_xy", generator_xy), ("generator_yx", generator_yx),
                             ("discriminator_x", discriminator_x), ("discriminator_y", discriminator_y)):
            _check_module(who, name, module)
        self.generator_xy, self.generator_yx = generator_xy, generator_yx
        self.discriminator_x, self.discriminator_y = discriminator_x, discriminator_y
        self.x_shape = _shape(who, "x_shape", x_shape)
        self.y_shape = self.x_shape if y_shape is None else _shape(who, "y_shape", y_shape)
        lambda_cycle = float(lambda_cycle)
        if not lambda_cycle >= 0 or math.isinf(lambda_cycle):
            raise ValueError(f"{who}: lambda_cycle must be a finite number >= 0, got {lambda_cycle}")
        self.lambda_cycle = lambda_cycle
        self.rng = as_generator(rng)
        self._probe()
        generators = generator_xy.parameters() + generator_yx.parameters()
        discriminators = discriminator_x.parameters() + discriminator_y.parameters()
        self.g_optimizer = self._optimizer(g_optimizer, generators, "g_optimizer", lr, betas)
        self.d_optimizer = self._optimizer(d_optimizer, discriminators, "d_optimizer", lr, betas)

    # --- construction
    def _optimizer(self, given, params, name, lr, betas):
        if given is None:
            return Adam(params, lr=lr, betas=betas)
        if not isinstance(given, Optimizer):
            raise TypeError(f"CycleGAN: {name} must be a tinydgm.optim Optimizer, got {type(given).__name__}")
        return given

    def _probe(self):
        """G, F, D_X and D_Y on two zero examples: each must give the other domain's shape,
        or one score per example."""
        p = self._param_like()
        xp = backend.xp_of(p.data)
        x = Tensor(xp.zeros((2,) + self.x_shape, dtype=p.dtype))
        y = Tensor(xp.zeros((2,) + self.y_shape, dtype=p.dtype))
        with no_grad(), _eval_mode(self.generator_xy, self.generator_yx, self.discriminator_x,
                                   self.discriminator_y):
            for name, net, inp, out_shape in (("generator_xy (G)", self.generator_xy, x, self.y_shape),
                                              ("generator_yx (F)", self.generator_yx, y, self.x_shape)):
                try:
                    out = net(inp)
                except (ValueError, TypeError) as err:
                    raise ValueError(f"CycleGAN: {name} does not take a batch of shape {inp.shape}: {err}") from None
                if not isinstance(out, Tensor) or tuple(out.shape) != (2,) + out_shape:
                    raise ValueError(f"CycleGAN: {name} must map a batch {inp.shape} to {(2,) + out_shape}, got "
                                     f"{getattr(out, 'shape', type(out).__name__)}")
            for name, net, inp in (("discriminator_x (D_X)", self.discriminator_x, x),
                                   ("discriminator_y (D_Y)", self.discriminator_y, y)):
                try:
                    scores = net(inp)
                except (ValueError, TypeError) as err:
                    raise ValueError(f"CycleGAN: {name} does not take a batch of shape {inp.shape}: {err}") from None
                if not isinstance(scores, Tensor) or tuple(scores.shape) not in ((2,), (2, 1)):
                    raise ValueError(f"CycleGAN: {name} must return one score per example, shape (N,) or (N, 1), "
                                     f"got {getattr(scores, 'shape', type(scores).__name__)}")

    def _param_like(self):
        return next(iter(self.generator_xy.parameters()))

    # --- the four players
    def G(self, x):
        """y_hat = G(x): X -> Y."""
        return self.generator_xy(x)

    def F(self, y):
        """x_hat = F(y): Y -> X."""
        return self.generator_yx(y)

    def D_X(self, x):
        """D_X's score per example, shape (N,)."""
        return _per_example(self.discriminator_x(x))

    def D_Y(self, y):
        """D_Y's score per example, shape (N,)."""
        return _per_example(self.discriminator_y(y))

    # --- losses (one pair of batches)
    def generator_terms(self, x, y):
        """The generators' objective as named 0-d Tensors whose sum G and F minimise:
        "gan_G" E_x[(D_Y(G(x)) - 1)^2], "gan_F" E_y[(D_X(F(y)) - 1)^2] and "cycle" lambda L_cyc.
        Also returns the translations (y_fake = G(x), x_fake = F(y)) for the discriminators."""
        y_fake, x_fake = self.G(x), self.F(y)
        terms = {"gan_G": least_squares_generator_loss(self.D_Y(y_fake)),
                 "gan_F": least_squares_generator_loss(self.D_X(x_fake)),
                 "cycle": self.lambda_cycle * cycle_consistency_loss(x, self.F(y_fake), y, self.G(x_fake))}
        return terms, (y_fake, x_fake)

    def discriminator_terms(self, x, y, x_fake, y_fake):
        """{"D_X": E_x[(D_X(x) - 1)^2] + E_y[D_X(F(y))^2], "D_Y": the same for D_Y}."""
        return {"D_X": least_squares_discriminator_loss(self.D_X(x), self.D_X(x_fake)),
                "D_Y": least_squares_discriminator_loss(self.D_Y(y), self.D_Y(y_fake))}

    # --- training
    def train_step(self, batch, rng=None):
        """One step: G and F descend their objective (D_X, D_Y frozen), then D_X and D_Y
        descend theirs on this step's translations. batch: (x, y), or one (N, 2, *shape)
        array when X and Y have the same shape (see the module docstring). Returns floats."""
        x, y = self._split_batch(batch, "train_step")
        with _frozen(self.discriminator_x), _frozen(self.discriminator_y):
            terms, (y_fake, x_fake) = self.generator_terms(x, y)
            loss = sum(terms.values())
            self.g_optimizer.zero_grad()
            loss.backward()
        self.g_optimizer.step()
        report = {name: value.item() for name, value in terms.items()}
        d_terms = self.discriminator_terms(x, y, x_fake.detach(), y_fake.detach())
        self.d_optimizer.zero_grad()
        sum(d_terms.values()).backward()
        self.d_optimizer.step()
        report.update({name: value.item() for name, value in d_terms.items()})
        return report

    # --- translation (no graph, evaluation mode)
    def translate_xy(self, x):
        """G(x) for a batch of X, without graph."""
        x = self._check(x, self.x_shape, "translate_xy", "x")
        with no_grad(), _eval_mode(self.generator_xy):
            return self.G(x)

    def translate_yx(self, y):
        """F(y) for a batch of Y, without graph."""
        y = self._check(y, self.y_shape, "translate_yx", "y")
        with no_grad(), _eval_mode(self.generator_yx):
            return self.F(y)

    def cycle_x(self, x):
        """F(G(x)): the reconstruction that L_cyc asks to be x."""
        return self.translate_yx(self.translate_xy(x))

    def cycle_y(self, y):
        """G(F(y))."""
        return self.translate_xy(self.translate_yx(y))

    # --- helpers
    def _check(self, t, shape, who, name):
        p = self._param_like()
        if not isinstance(t, Tensor):
            t = Tensor(backend.as_array(t, dtype=p.dtype, device=p.device))
        elif t.dtype != p.dtype:
            t = t.astype(p.dtype)
        if tuple(t.shape[1:]) != shape or t.shape[0] < 1:
            raise ValueError(f"CycleGAN.{who}: {name} must have shape (N, {', '.join(map(str, shape))}) with "
                             f"N >= 1, got shape {tuple(t.shape)}")
        return t.detach()

    def _split_batch(self, batch, who):
        if isinstance(batch, (tuple, list)):
            if len(batch) != 2:
                raise ValueError(f"CycleGAN.{who}: batch must be (x, y), got {len(batch)} items")
            return self._check(batch[0], self.x_shape, who, "x"), self._check(batch[1], self.y_shape, who, "y")
        if self.x_shape != self.y_shape:
            raise ValueError(f"CycleGAN.{who}: X {self.x_shape} and Y {self.y_shape} differ in shape: pass (x, y), "
                             f"not one stacked batch")
        stacked = self._check(batch, (2,) + self.x_shape, who, "a stacked batch (x | y)")
        return stacked[:, 0], stacked[:, 1]

    def extra_repr(self):
        return f"x_shape={self.x_shape}, y_shape={self.y_shape}, lambda_cycle={self.lambda_cycle}"

    def __repr__(self):
        return (f"CycleGAN({self.extra_repr()}): {self.summary()}\n"
                f"  (generator_xy): {_short(self.generator_xy)}\n  (generator_yx): {_short(self.generator_yx)}\n"
                f"  (discriminator_x): {_short(self.discriminator_x)}\n"
                f"  (discriminator_y): {_short(self.discriminator_y)}")


def _per_example(scores):
    return scores.reshape(-1) if scores.ndim == 2 else scores
