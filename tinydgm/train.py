"""The training loop: minibatch gradient descent on ``model.loss(batch)``.

    history = fit(model, x_train, Adam(model.parameters(), lr=1e-3), epochs=10, batch_size=100,
                  seed=0, valid_data=x_valid, checkpoint_path="runs/made.npz")
    history["loss"]          # one value per step
    history["valid_loss"]    # one value per epoch

One step: ``optimizer.zero_grad()``, ``loss = model.loss(batch)``, check that the loss is
finite, ``loss.backward()``, optional gradient clipping, ``optimizer.step()``.

Every model trains here, whatever its family (see ``tinydgm.models.protocol``): likelihood
models minimise the mean negative log-likelihood (or minus a bound on it); Boltzmann
machines and the other energy models minimise a contrastive surrogate such as
mean F(v_data) - mean F(v_model), the negative samples v_model drawn by the model's own
CD/PCD chains and held fixed, so that the gradient fit follows is minus the CD estimate of
the likelihood gradient (e.g. ``BernoulliRBM.loss``: with ``SGD`` and no momentum, fit takes
the same steps as ``BernoulliRBM.fit``). For those models the loss values (and
``valid_loss``) are not log-likelihoods: they show that training moves, not how well.

Randomness: one NumPy Generator drives the whole run. It shuffles the data
(``tinydgm.data.batches``), and every module of the model that keeps its own generator in
an attribute ``rng`` (as a VAE does for eps ~ N(0, I), and the energy models for their
chains) draws from it during ``fit``: fit points each such ``module.rng`` (a Generator, or
None meaning "the default generator") at the run's generator and puts the old one back
when it returns or fails. So the same seed gives bit-identical histories and
parameters, and a checkpoint (which stores the generator's state) resumes the same random
stream. Validation draws from the same stream, after each epoch's training steps.
Randomness drawn elsewhere (numpy.random's global state, a generator under another
attribute name) is outside this contract. Epochs and steps are counted from 1.

Checkpoints (``checkpoint_path``) are written atomically at the end of every
``checkpoint_every``-th epoch, at the last epoch and when a callback stops the run. A NaN
or infinite loss raises ``TrainingError`` before the optimizer step, and the step is
undone: computing the loss may already have changed state (batch-norm running
statistics, act-norm's data-dependent initialisation, persistent chains, generator
draws), so fit saves every module's attributes (arrays copied) and every generator's
state before each step and puts them back when the loss is refused or raises. The
model, optimizer and generators are then exactly as after the last finite step, and the
last checkpoint on disk is untouched.
``resume=True`` continues from the checkpoint (model, optimizer, scheduler, generator,
epoch, step, history): 2 epochs + resume for 2 more gives the same bits as 4 epochs.
"""
import math
import os
import sys
import time

from tqdm import tqdm

from tinydgm import backend
from tinydgm import checkpoint as ckpt_io
from tinydgm.autodiff.core import Tensor, no_grad, tensor
from tinydgm.data import batches, n_batches
from tinydgm.optim import clip_grad_norm_

__all__ = ["fit", "TrainingError", "HISTORY_KEYS"]

HISTORY_KEYS = ("loss", "lr", "epoch_loss", "valid_loss", "time")   # per step: loss, lr; per epoch: the rest


class TrainingError(RuntimeError):
    """The loss became NaN or infinite. Carries ``epoch``, ``step`` (1-based: the failing
    step), ``loss`` and the ``history`` up to the last finite step."""

    def __init__(self, message, epoch, step, loss, history):
        super().__init__(message)
        self.epoch, self.step, self.loss, self.history = epoch, step, loss, history


def fit(model, data, optimizer, epochs, batch_size, rng=None, seed=None, valid_data=None,
        on_epoch_end=None, checkpoint_path=None, checkpoint_every=1, scheduler=None,
        scheduler_interval="epoch", clip_grad_norm=None, progress=True, resume=False,
        shuffle=True, drop_last=False, valid_batch_size=None, config=None):
    """Train ``model`` by minimising ``model.loss(batch)``; returns the history.

    model: a Module with ``loss(batch) -> scalar Tensor``. ``batch`` is a Tensor on the
    model's device, floating data cast to the model's dtype (or a tuple of Tensors when
    ``data`` is a tuple of arrays, e.g. (images, labels); integer labels stay integers).
    data, valid_data: a NumPy array (or Tensor) of examples along axis 0, or a tuple of them.
    optimizer: a ``tinydgm.optim`` optimizer over the model's parameters.
    epochs: the total number of epochs (with ``resume``: including those already done).
    rng / seed: the run's NumPy Generator, or a seed for a new one (not both); with
    neither, ``tinydgm.backend.default_generator()`` (see ``td.seed``).
    on_epoch_end: ``callback(epoch, history, model)`` after each epoch's validation;
    returning False stops training (after writing the checkpoint).
    scheduler: a learning-rate schedule, stepped once per epoch or, with
    ``scheduler_interval="step"``, once per optimizer step.
    clip_grad_norm: clip the global gradient norm to this value before each step.
    progress: a tqdm bar per epoch on stderr with the running mean loss of the epoch.
    resume: continue from ``checkpoint_path`` if that file exists (else start afresh): the
    model, optimizer, scheduler, epoch, step, history and the generator (which replaces
    ``rng``/``seed``) come from the checkpoint.
    shuffle, drop_last: passed to ``tinydgm.data.batches``; validation never shuffles.
    config: a JSON-able dict stored in the checkpoints (e.g. the model's hyperparameters).

    Returns a dict of float64 arrays: "loss" and "lr" per step (the lr the step used),
    "epoch_loss" (mean step loss), "valid_loss" (mean validation loss weighted by batch
    size; NaN without valid_data) and "time" (wall-clock seconds) per epoch.
    """
    _check_arguments(model, epochs, batch_size, checkpoint_every, scheduler_interval, clip_grad_norm,
                     on_epoch_end, resume, checkpoint_path, rng, seed)
    data = _as_arrays(data, "data")
    n = _num_examples(data, "data")
    if drop_last and n < batch_size:
        raise ValueError(f"fit: drop_last=True with batch_size {batch_size} but data has only {n} examples, "
                         "so an epoch would have no batch; lower batch_size or set drop_last=False")
    steps_per_epoch = n_batches(n, batch_size, drop_last)
    if valid_data is not None:
        valid_data = _as_arrays(valid_data, "valid_data")
        _num_examples(valid_data, "valid_data")
    if rng is None:
        rng = backend.default_generator() if seed is None else backend.rng(seed)

    history = {key: [] for key in HISTORY_KEYS}
    step, start_epoch, saved_epoch = 0, 0, None
    if resume and _exists(checkpoint_path):
        state = ckpt_io.load(checkpoint_path, model, optimizer, scheduler)
        rng = state.rng if state.rng is not None else rng
        step, start_epoch, saved_epoch = state.step, state.epoch, state.epoch
        for key in HISTORY_KEYS:
            history[key] = [float(v) for v in state.history.get(key, [])]

    run = _Run(model, optimizer, scheduler if scheduler_interval == "step" else None, clip_grad_norm,
               step, history, checkpoint_path, saved_epoch, steps_per_epoch, rng)
    was_training = getattr(model, "training", True)
    borrowed = _lend_generator(model, rng)
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            started = time.perf_counter()
            with tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}", file=sys.stderr,
                      disable=not progress, leave=True, dynamic_ncols=True) as bar:
                epoch_loss = run.train_epoch(epoch, batches(data, batch_size, rng=rng, shuffle=shuffle,
                                                            drop_last=drop_last), bar)
                valid_loss = math.nan if valid_data is None else \
                    _validate(model, valid_data, valid_batch_size or batch_size, run.placement)
                bar.set_postfix(loss=f"{epoch_loss:.4g}", **({} if valid_data is None else
                                                             {"valid": f"{valid_loss:.4g}"}))
            if scheduler is not None and scheduler_interval == "epoch":
                scheduler.step()
            history["epoch_loss"].append(epoch_loss)
            history["valid_loss"].append(valid_loss)
            history["time"].append(time.perf_counter() - started)

            stop = on_epoch_end is not None and on_epoch_end(epoch, _as_history(history), model) is False
            if checkpoint_path is not None and (epoch % checkpoint_every == 0 or epoch == epochs or stop):
                ckpt_io.save(checkpoint_path, model, optimizer, scheduler, config=config, rng=rng,
                             step=run.step, epoch=epoch, history=_as_history(history),
                             extra={"fit": {"batch_size": batch_size, "epochs": epochs}})
                run.saved_epoch = epoch
            if stop:
                break
    finally:
        _return_generator(borrowed)
        _set_mode(model, training=was_training)
    return _as_history(history)


class _Run:
    """The state that one epoch of training needs (so that ``fit`` reads as the outer loop)."""

    def __init__(self, model, optimizer, step_scheduler, clip_grad_norm, step, history, checkpoint_path,
                 saved_epoch, steps_per_epoch, rng):
        self.model, self.optimizer, self.step_scheduler, self.history = model, optimizer, step_scheduler, history
        self.rng = rng
        self.clip_grad_norm, self.params = clip_grad_norm, list(model.parameters())
        self.step, self.saved_epoch, self.checkpoint_path = step, saved_epoch, checkpoint_path
        self.steps_per_epoch = steps_per_epoch
        self.placement = _placement(model)

    def train_epoch(self, epoch, minibatches, bar):
        """One pass over the minibatches; returns the epoch's mean loss."""
        _set_mode(self.model, training=True)
        losses = []
        for batch in minibatches:
            self.step += 1
            before = _ModelState(self.model, self.rng)
            self.optimizer.zero_grad()
            try:
                loss = self.model.loss(_to_tensors(batch, self.placement))
                value = _loss_value(loss)
            except BaseException:
                before.restore()
                raise
            if not math.isfinite(value):        # refuse the step: no update, and the loss's side effects undone
                before.restore()
                raise self._nan_error(value, epoch, len(losses) + 1)
            loss.backward()
            del loss                            # free the graph before the update
            if self.clip_grad_norm is not None:
                clip_grad_norm_(self.params, self.clip_grad_norm)
            self.history["lr"].append(float(getattr(self.optimizer, "lr", math.nan)))
            self.optimizer.step()
            if self.step_scheduler is not None:
                self.step_scheduler.step()
            self.history["loss"].append(value)
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{math.fsum(losses) / len(losses):.4g}", refresh=False)
        return math.fsum(losses) / len(losses)

    def _nan_error(self, value, epoch, batch):
        if self.checkpoint_path is None:
            where = "no checkpoint is kept (checkpoint_path=None)"
        elif self.saved_epoch is None:
            where = f"no checkpoint had been written to {self.checkpoint_path} yet"
        else:
            where = f"the last good checkpoint, {self.checkpoint_path} (epoch {self.saved_epoch}), is untouched"
        return TrainingError(f"fit: the loss is {value} at epoch {epoch}, step {self.step} (batch {batch} of "
                             f"{self.steps_per_epoch} in the epoch); the optimizer step was not taken and {where}",
                             epoch=epoch, step=self.step, loss=value, history=_as_history(self.history))


def _loss_value(loss):
    if not isinstance(loss, Tensor) or loss.size != 1:
        what = f"a Tensor of shape {loss.shape}" if isinstance(loss, Tensor) else f"a {type(loss).__name__}"
        raise TypeError(f"fit: model.loss(batch) must return a scalar Tensor, got {what}")
    return float(loss.item())


def _validate(model, valid_data, batch_size, placement):
    """Mean of model.loss over the validation batches, weighted by batch size (the
    per-example mean when the loss is a mean over the batch), in eval mode, no graph."""
    _set_mode(model, training=False)
    total, count = 0.0, 0
    try:
        with no_grad():
            for batch in batches(valid_data, batch_size, shuffle=False):
                size = len(batch[0] if isinstance(batch, tuple) else batch)
                total += _loss_value(model.loss(_to_tensors(batch, placement))) * size
                count += size
    finally:
        _set_mode(model, training=True)
    return total / count


def _set_mode(model, training):
    if hasattr(model, "train"):
        model.train(training)


def _as_history(history):
    cpu = backend.module_for_device("cpu")
    return {key: cpu.asarray(values, dtype=cpu.float64) for key, values in history.items()}


# ----------------------------------------------------------------------------- arguments and data

def _check_arguments(model, epochs, batch_size, checkpoint_every, scheduler_interval, clip_grad_norm,
                     on_epoch_end, resume, checkpoint_path, rng, seed):
    if not callable(getattr(model, "loss", None)):
        raise TypeError(f"fit: the model ({type(model).__name__}) has no loss(batch) method to minimise")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"fit: {name} must be an integer >= 1, got {value!r}")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f'fit: scheduler_interval must be "epoch" or "step", got {scheduler_interval!r}')
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"fit: clip_grad_norm must be a number > 0 (or None), got {clip_grad_norm!r}")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise TypeError(f"fit: on_epoch_end must be callable(epoch, history, model), "
                        f"got {type(on_epoch_end).__name__}")
    if resume and checkpoint_path is None:
        raise ValueError("fit: resume=True needs checkpoint_path (the checkpoint to resume from)")
    if rng is not None and seed is not None:
        raise ValueError("fit: pass rng or seed, not both")
    if rng is not None and not isinstance(rng, backend.module_for_device("cpu").random.Generator):
        raise TypeError(f"fit: rng must be a NumPy Generator (td.rng(seed)), got {type(rng).__name__}")


def _as_arrays(data, name):
    """Backend arrays from an array, a Tensor, or a tuple/list of them."""
    if isinstance(data, (tuple, list)):
        if not data:
            raise ValueError(f"fit: {name} is an empty tuple")
        return tuple(_as_array(d, f"{name}[{i}]") for i, d in enumerate(data))
    return _as_array(data, name)


def _as_array(x, name):
    if isinstance(x, Tensor):
        return x.data
    if backend.is_array(x):
        return x
    raise TypeError(f"fit: {name} must be an array (or a Tensor, or a tuple of arrays), got {type(x).__name__}")


def _num_examples(data, name):
    arrays = data if isinstance(data, tuple) else (data,)
    if any(a.ndim == 0 for a in arrays):
        raise ValueError(f"fit: {name} must hold examples along axis 0, got a 0-d array")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(f"fit: the arrays of {name} have different numbers of examples {lengths}")
    if lengths[0] == 0:
        raise ValueError(f"fit: {name} is empty (shape {arrays[0].shape})")
    return lengths[0]


def _exists(path):
    return path is not None and os.path.exists(path)


def _placement(model):
    """(device, floating dtype) of the model's first parameter: where batches go."""
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    if not params:
        return "cpu", None
    return params[0].device, params[0].dtype


def _to_tensors(batch, placement):
    """The minibatch as Tensors on the model's device, floating arrays in the model's dtype
    (float64 data for a float32 model would otherwise make float64 gradients), other arrays
    (labels) as they are; a tuple for tuple data."""
    device, dtype = placement
    if isinstance(batch, tuple):
        return tuple(_to_tensor(b, device, dtype) for b in batch)
    return _to_tensor(batch, device, dtype)


def _to_tensor(array, device, dtype):
    cast = dtype is not None and backend.is_floating(array.dtype) and array.dtype != dtype
    return tensor(array, dtype=dtype if cast else None, device=device)


# ----------------------------------------------------------------------------- undoing a refused step

class _ModelState:
    """What computing ``model.loss(batch)`` may change, saved so that a refused step leaves
    no trace: every module's attributes, with each array copied (parameters, which act-norm's
    initialisation rewrites; buffers such as running statistics and ``initialized`` flags;
    persistent chains, which some samplers update in place), and the state of every
    Generator the model holds and of the run's ``rng``. The optimizer is not saved: it only
    changes in ``optimizer.step()``, after the loss has been accepted."""

    def __init__(self, model, rng):
        modules = model.modules() if hasattr(model, "modules") else [model]
        self.generators = {id(rng): rng}
        self.attributes = [(module, {name: self._save(value) for name, value in vars(module).items()})
                           for module in modules]
        self.generator_states = [(g, g.bit_generator.state) for g in self.generators.values()]

    def _save(self, value):
        if isinstance(value, Tensor):
            return _SavedTensor(value, value.data.copy())
        if backend.is_array(value):
            return value.copy()
        if isinstance(value, (tuple, list)):
            return _rebuilt(value, [self._save(v) for v in value])
        if isinstance(value, dict):
            return {key: self._save(v) for key, v in value.items()}
        if isinstance(value, backend.module_for_device("cpu").random.Generator):
            self.generators[id(value)] = value
        return value

    def restore(self):
        for module, attributes in self.attributes:
            vars(module).clear()
            vars(module).update((name, _restored(value)) for name, value in attributes.items())
        for generator, state in self.generator_states:
            generator.bit_generator.state = state


class _SavedTensor:
    def __init__(self, tensor, data):
        self.tensor, self.data = tensor, data


def _restored(value):
    if isinstance(value, _SavedTensor):
        value.tensor.data = value.data
        return value.tensor
    if isinstance(value, (tuple, list)):
        return _rebuilt(value, [_restored(v) for v in value])
    if isinstance(value, dict):
        return {key: _restored(v) for key, v in value.items()}
    return value


def _rebuilt(sequence, items):
    """A list, tuple or named tuple of the same type as ``sequence`` holding ``items``."""
    if isinstance(sequence, tuple) and hasattr(sequence, "_fields"):
        return type(sequence)(*items)
    return type(sequence)(items)


# ----------------------------------------------------------------------------- the model's generators

def _lend_generator(model, rng):
    """Point every module's ``rng`` (a Generator, or None: the default generator) at the
    run's; returns what to give back."""
    generator = backend.module_for_device("cpu").random.Generator
    modules = model.modules() if hasattr(model, "modules") else [model]
    borrowed = []
    for module in modules:
        old = getattr(module, "rng", False)
        if old is None or isinstance(old, generator):
            borrowed.append((module, old))
            object.__setattr__(module, "rng", rng)
    return borrowed


def _return_generator(borrowed):
    for module, old in borrowed:
        object.__setattr__(module, "rng", old)
