"""Checkpoints: a model, its optimizer and schedule, the random stream and the training
history in ONE ``.npz`` file, written atomically.

    save("run/ckpt.npz", model, optimizer, scheduler, config={"hidden": 500}, rng=rng,
         step=1200, epoch=3, history=history)
    ckpt = load("run/ckpt.npz", model, optimizer, scheduler)    # restores them in place
    ckpt.epoch, ckpt.step, ckpt.rng, ckpt.history, ckpt.config

Layout of the archive (every entry an array; no pickles, so ``numpy.load(path)`` with its
default ``allow_pickle=False`` reads it):

    format            "tinydgm-checkpoint/1"
    model/<name>      model.state_dict(): parameters and buffers by dotted name
    optim/<key>       the arrays of optimizer.state_dict() ...
    sched/<key>       ... and of scheduler.state_dict()
    tree/optim        JSON: the structure of those state dicts, with their numbers and
    tree/sched          strings inline (Python floats round-trip exactly through JSON)
    tree/extra        and arrays as references {"__array__": "optim/m.0"}
    extra/<key>       the arrays of ``extra``
    config            JSON of the ``config`` dict (tuples come back as lists)
    rng               JSON of the NumPy Generator's ``bit_generator.state`` (integers
                        exact; Philox's small arrays as {"__ndarray__": [...], "dtype": ...})
    step, epoch       int64 scalars
    history/<key>     one array per history entry

Why atomic: a crash (or Ctrl-C) while writing must never leave a half-written file where
the last good checkpoint was. ``save`` writes a temporary file in the same directory,
flushes it to disk (fsync), and renames it over the target (``os.replace`` is atomic on
POSIX and Windows); on any error the temporary file is removed and the old checkpoint is
left as it was.

Checkpoints are host data: state dicts are NumPy arrays (``Module.state_dict`` copies from
the GPU), so this module works with the CPU array module whatever device the model is on.
"""
import json
import os
import tempfile
from dataclasses import dataclass, field

from tinydgm import backend
from tinydgm.autodiff.core import Tensor

__all__ = ["save", "load", "Checkpoint", "CheckpointError", "FORMAT"]

FORMAT = "tinydgm-checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a tinydgm checkpoint, or one that does not fit the given objects."""


@dataclass
class Checkpoint:
    """What ``load`` read. ``rng`` is a NumPy Generator in the saved state (None if none was
    saved); the ``*_state`` fields are the raw state dicts (useful when ``load`` was
    called without the object to restore into)."""
    path: str
    config: dict = field(default_factory=dict)
    rng: object = None
    step: int = 0
    epoch: int = 0
    history: dict = field(default_factory=dict)
    extra: object = None
    model_state: dict = field(default_factory=dict)
    optimizer_state: dict = None
    scheduler_state: dict = None

    def __repr__(self):
        """A short summary (never the arrays): where, when, how big, what else it holds."""
        arrays = list(self.model_state.values())
        dtypes = ", ".join(sorted({str(a.dtype) for a in arrays})) or "none"
        held = [name for name, state in (("optimizer", self.optimizer_state), ("scheduler", self.scheduler_state),
                                         ("rng", self.rng)) if state is not None]
        steps = {key: len(values) for key, values in self.history.items()}
        return (f"Checkpoint({self.path!r}, epoch={self.epoch}, step={self.step}, model: {len(arrays)} arrays, "
                f"{sum(int(a.size) for a in arrays):,} values, {dtypes}; with {', '.join(held) or 'nothing else'}; "
                f"history {steps}; config keys {sorted(self.config)})")


def _cpu():
    """The CPU array module: checkpoints hold host arrays."""
    return backend.module_for_device("cpu")


# ----------------------------------------------------------------------------- nested state <-> arrays + JSON

def _encode(tree, prefix, arrays, where):
    """A JSON-able skeleton of ``tree``; each array goes into ``arrays`` under a key that
    starts with ``prefix`` and is referenced from the skeleton.

    Dicts become ``{"__dict__": [[key, value], ...]}`` (so integer keys stay integers),
    tuples ``{"__tuple__": [...]}``, arrays ``{"__array__": key}`` (``"scalar": true`` for
    a NumPy scalar such as float32(0.9)); Python numbers, strings, bools and None stay
    inline.
    """
    cpu = _cpu()
    if isinstance(tree, Tensor):
        tree = tree.data
    if backend.is_array(tree) or isinstance(tree, cpu.generic):
        key = prefix
        n = 1
        while key in arrays:            # two paths that print alike, e.g. key 0 and key "0"
            key, n = f"{prefix}~{n}", n + 1
        arrays[key] = backend.to_numpy(tree) if backend.is_array(tree) else cpu.asarray(tree)
        ref = {"__array__": key}
        if isinstance(tree, cpu.generic):
            ref["scalar"] = True
        return ref
    if isinstance(tree, dict):
        items = []
        for k, v in tree.items():
            if not (k is None or isinstance(k, (str, int, float, bool))):
                raise TypeError(f"save: {where} has a key {k!r} of type {type(k).__name__}; "
                                "keys must be strings or numbers")
            items.append([k, _encode(v, f"{prefix}/{k}", arrays, where)])
        return {"__dict__": items}
    if isinstance(tree, (list, tuple)):
        values = [_encode(v, f"{prefix}/{i}", arrays, where) for i, v in enumerate(tree)]
        return {"__tuple__": values} if isinstance(tree, tuple) else values
    if tree is None or isinstance(tree, (str, int, float, bool)):
        return tree
    raise TypeError(f"save: {where} holds a {type(tree).__name__} at '{prefix}', which a checkpoint "
                    "cannot store (use arrays, numbers, strings, lists and dicts)")


def _decode(skeleton, archive):
    """The inverse of ``_encode``."""
    if isinstance(skeleton, list):
        return [_decode(v, archive) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__array__" in skeleton:
            array = archive[skeleton["__array__"]]
            return array[()] if skeleton.get("scalar") else array
        if "__tuple__" in skeleton:
            return tuple(_decode(v, archive) for v in skeleton["__tuple__"])
        return {k: _decode(v, archive) for k, v in skeleton["__dict__"]}
    return skeleton


def _json_entry(value, what):
    try:
        return _cpu().array(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise TypeError(f"save: {what} must be JSON-serialisable (dicts, lists, strings, numbers): {err}") from None


# ----------------------------------------------------------------------------- save

def save(path, model, optimizer=None, scheduler=None, config=None, rng=None, step=0, epoch=0,
         history=None, extra=None):
    """Write a checkpoint to ``path`` (used as given: no ``.npz`` is appended) atomically.

    model: a Module (its ``state_dict()``); optimizer, scheduler: objects with
    ``state_dict()``; config: a JSON-able dict (e.g. the model's hyperparameters);
    rng: the NumPy Generator to resume the random stream from; step, epoch: counters;
    history: a dict of arrays (e.g. what ``train.fit`` returns); extra: anything made of
    arrays, numbers, strings, lists and dicts. Returns ``path``.
    """
    cpu = _cpu()
    path = os.fspath(path)
    arrays = {"format": cpu.array(FORMAT)}
    for name, value in model.state_dict().items():
        arrays[f"model/{name}"] = backend.to_numpy(value)
    for section, owner in (("optim", optimizer), ("sched", scheduler)):
        if owner is not None:
            skeleton = _encode(owner.state_dict(), section, arrays, f"{type(owner).__name__}.state_dict()")
            arrays[f"tree/{section}"] = _json_entry(skeleton, f"the {section} state")
    if extra is not None:
        arrays["tree/extra"] = _json_entry(_encode(extra, "extra", arrays, "extra"), "extra")
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"save: config must be a dict, got {type(config).__name__}")
    arrays["config"] = _json_entry(config or {}, "config")
    if rng is not None:
        if not isinstance(rng, cpu.random.Generator):
            raise TypeError(f"save: rng must be a NumPy Generator (numpy.random.default_rng), "
                            f"got {type(rng).__name__}")
        arrays["rng"] = _cpu().array(json.dumps(rng.bit_generator.state, default=_array_to_json))
    arrays["step"] = cpu.array(int(step), dtype=cpu.int64)
    arrays["epoch"] = cpu.array(int(epoch), dtype=cpu.int64)
    for key, values in (history or {}).items():
        arrays[f"history/{key}"] = _host_array(values)
    _write_atomically(path, arrays)
    return path


def _host_array(values):
    """A NumPy array from an array, a Tensor or a list of numbers."""
    if isinstance(values, Tensor):
        return values.numpy()
    return backend.to_numpy(values) if backend.is_array(values) else _cpu().asarray(values)


def _write_atomically(path, arrays):
    """np.savez into a temporary file beside ``path``, fsync, rename over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _cpu().savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- load

def load(path, model=None, optimizer=None, scheduler=None):
    """Read the checkpoint at ``path``, restore ``model``, ``optimizer`` and ``scheduler``
    (each optional) in place, and return a ``Checkpoint`` with the config, a Generator in
    the saved state, step, epoch, history and extra.

    Raises FileNotFoundError for a missing file and CheckpointError for a file that is not
    a tinydgm checkpoint, lacks the state asked for, or does not fit the model (with
    ``load_state_dict``'s message: missing, unexpected or mis-shaped keys). All or nothing:
    when it raises, the model, optimizer and scheduler are as they were before the call.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no checkpoint at {path}")
    archive = _read(path)
    if "format" not in archive:
        raise CheckpointError(f"load: {path} is not a tinydgm checkpoint (no 'format' entry; "
                              f"its entries: {sorted(archive)[:10]})")
    found = str(archive["format"])
    if found != FORMAT:
        raise CheckpointError(f"load: {path} has format {found!r}; this tinydgm reads {FORMAT!r}")

    model_state = {k[len("model/"):]: v for k, v in archive.items() if k.startswith("model/")}
    ckpt = Checkpoint(path=path, model_state=model_state,
                      config=json.loads(str(archive["config"])),
                      step=int(archive["step"]), epoch=int(archive["epoch"]),
                      history={k[len("history/"):]: v for k, v in archive.items() if k.startswith("history/")})
    if "rng" in archive:
        ckpt.rng = _generator(json.loads(str(archive["rng"]), object_hook=_array_from_json))
    for section, attr in (("optim", "optimizer_state"), ("sched", "scheduler_state")):
        if f"tree/{section}" in archive:
            setattr(ckpt, attr, _decode(json.loads(str(archive[f"tree/{section}"])), archive))
    if "tree/extra" in archive:
        ckpt.extra = _decode(json.loads(str(archive["tree/extra"])), archive)

    targets = [(owner, state, what) for owner, state, what in
               ((model, model_state, "model"), (optimizer, ckpt.optimizer_state, "optimizer"),
                (scheduler, ckpt.scheduler_state, "scheduler")) if owner is not None]
    for owner, state, what in targets:
        if state is None:
            raise CheckpointError(f"load: {path} holds no {what} state (it was saved without one)")
    _restore_all(targets, path)
    return ckpt


def _read(path):
    """All entries of the .npz as arrays (read eagerly, so the file is closed at once)."""
    try:
        archive = _cpu().load(path, allow_pickle=False)
    except Exception as err:        # ValueError, OSError, zipfile.BadZipFile, EOFError, ...
        raise CheckpointError(f"load: {path} is not a tinydgm checkpoint (cannot be read as .npz: "
                              f"{type(err).__name__}: {err})") from None
    if not hasattr(archive, "files"):
        raise CheckpointError(f"load: {path} is not a tinydgm checkpoint (a single .npy array, not an .npz)")
    try:
        return {key: archive[key] for key in archive.files}
    except Exception as err:        # a truncated or corrupt member
        raise CheckpointError(f"load: {path} is a damaged .npz ({type(err).__name__}: {err})") from None
    finally:
        archive.close()


def _restore_all(targets, path):
    """Restore every (owner, state, what) or none: each ``load_state_dict`` checks its
    state before changing anything, but a later one (the optimizer's) can still refuse
    after an earlier one (the model's) has been applied. So the current state of every
    owner is saved first and, if any refuses, those already restored are put back."""
    current = [owner.state_dict() for owner, _, _ in targets]
    touched = []
    try:
        for (owner, state, what), saved in zip(targets, current):
            touched.append((owner, saved))          # the one that refuses may have changed something too
            _restore(owner, state, path, what)
    except BaseException:
        for owner, saved in reversed(touched):      # the scheduler sets the optimizer's lr: undo it first
            owner.load_state_dict(saved)
        raise


def _restore(owner, state, path, what):
    try:
        owner.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as err:
        message = err.args[0] if err.args else str(err)
        raise CheckpointError(f"load: {path} does not fit the {what} ({type(owner).__name__}): {message}") from err


def _array_to_json(value):
    """JSON for the small integer arrays in some generator states (Philox's counter and key)."""
    if backend.is_array(value):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _array_from_json(obj):
    if "__ndarray__" in obj:
        return _cpu().asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return obj


def _generator(state):
    """A NumPy Generator with the saved ``bit_generator.state`` (PCG64, Philox, ...)."""
    random = _cpu().random
    bit_generator = getattr(random, state["bit_generator"])()
    bit_generator.state = state
    return random.Generator(bit_generator)
