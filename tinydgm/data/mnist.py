"""MNIST (60k/10k) and statically binarized MNIST (50k/10k/10k): a loader with checksums.

    m = load_mnist()              # x_train (60000, 28, 28) uint8, y_train, x_test, y_test
    b = load_binarized_mnist()    # train (50000, 784) uint8 in {0, 1}, valid, test (10000 each)

Where the data comes from, first match wins:

1. ``path=``: an .npz file, or a folder holding one of the accepted local formats;
2. the folder in the environment variable ``TINYDGM_DATA``;
3. the cache folder: ``cache_dir=``, else ``$XDG_CACHE_HOME/tinydgm``, else ``~/.cache/tinydgm``;
4. a download from the canonical mirrors (``download=True``) into the cache folder.

Accepted local formats, in a folder (the same names as the downloads and the cache):

    MNIST:            mnist.npz (Keras's keys x_train, y_train, x_test, y_test), or the four IDX
                      files train-images-idx3-ubyte, train-labels-idx1-ubyte,
                      t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each raw or .gz)
    binarized MNIST:  binarized_mnist.npz (keys train, valid, test), or Larochelle's
                      binarized_mnist_{train,valid,test}.amat (784 values 0/1 per line)

So a folder such as the project's ``shared/data`` (mnist.npz, binarized_mnist.npz) works as
``path=`` or ``TINYDGM_DATA``. Every source is verified: .npz arrays by the sha256 of
their bytes, IDX files by the sha256 of their decompressed content, .amat files by their
MD5 (the values below; ``checksums=`` overrides them). Shapes, dtypes and value ranges
are checked with errors that name the dataset, the split and both shapes.

Downloads go to a temporary file in the cache folder, are verified, then renamed into
place (``os.replace``): an interrupted or corrupt download removes its temporary file and
raises ``DownloadError``/``ChecksumError`` naming the URL and the checksums; nothing is
left behind. Raw files parsed from any folder are cached as mnist.npz /
binarized_mnist.npz in the cache folder, written the same atomic way.

Binarized MNIST is unlabeled; its test split is sorted by class (all 0s, then 1s, ...):
``binarized_mnist_test_labels()`` gives those labels. Shuffle before taking a subset.
"""
import contextlib
import gzip
import hashlib
import http.client
import os
import pathlib
import struct
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

__all__ = ["load_mnist", "load_binarized_mnist", "binarized_mnist_test_labels", "download_file",
           "default_cache_dir", "atomic_write", "parse_idx", "parse_amat", "DataError",
           "DownloadError", "ChecksumError", "ENV_VAR"]

ENV_VAR = "TINYDGM_DATA"

# ----------------------------------------------------------------------------- MNIST constants

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",        # PyTorch's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",   # TensorFlow's mirror
    "http://yann.lecun.com/exdb/mnist/",                     # the original
)
MNIST_NPZ = "mnist.npz"
MNIST_FILES = {                  # array key -> IDX file (downloaded as <name>.gz)
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
MNIST_SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,),
                "x_test": (10000, 28, 28), "y_test": (10000,)}
MNIST_MAX = {"x_train": 255, "y_train": 9, "x_test": 255, "y_test": 9}
# sha256 of the decompressed IDX files (LeCun's *.gz, gunzipped)
MNIST_FILE_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# hashlib.sha256(array.tobytes()) of the parsed arrays (what mnist.npz must hold)
MNIST_ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}

# ----------------------------------------------------------------------------- binarized constants

BINARIZED_MIRRORS = ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",)
BINARIZED_NPZ = "binarized_mnist.npz"
BINARIZED_FILES = {"train": "binarized_mnist_train.amat",
                   "valid": "binarized_mnist_valid.amat",
                   "test": "binarized_mnist_test.amat"}
BINARIZED_SHAPES = {"train": (50000, 784), "valid": (10000, 784), "test": (10000, 784)}
BINARIZED_MAX = {"train": 1, "valid": 1, "test": 1}
BINARIZED_FILE_MD5 = {
    "binarized_mnist_train.amat": "db28b1a6ae0fe70cbd3da91acf46e477",
    "binarized_mnist_valid.amat": "bf37822a04e94123630de6a7dfd9c9ef",
    "binarized_mnist_test.amat": "14e41ae11040adba6ab8cb291eda0dd8",
}
BINARIZED_ARRAY_SHA256 = {
    "train": "43490d4d6ac9002727af4426d8748609fdb7e4094fa65ad8d681ea60082a7a5a",
    "valid": "069b4f0beb389b776478c3e872b4df71c95ac4be64d7cbe6d32e24ebac8e6d5e",
    "test": "ca0294c3b8d984c7a1dc891015a8eea6f37bae59a34e35ea0fc8c47110a8dd86",
}
# the test split is sorted by class; these are the MNIST test class counts
BINARIZED_TEST_CLASS_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


class DataError(ValueError):
    """A data file is missing, malformed or fails its checksum."""


class ChecksumError(DataError):
    """A file's (or an array's) checksum differs from the expected one."""


class DownloadError(DataError, OSError):
    """A download failed (network error, interrupted transfer, corrupt archive); nothing was written."""


# ----------------------------------------------------------------------------- public loaders

def load_mnist(path=None, cache_dir=None, download=True, urls=None, checksums=None,
               progress=True, timeout=60.0):
    """MNIST: dict(x_train=(60000, 28, 28), y_train=(60000,), x_test=(10000, 28, 28),
    y_test=(10000,)), all uint8 (pixels 0..255, labels 0..9), in the original IDX order.

    path: an .npz file or a folder (see the module docstring for the search order).
    cache_dir: where downloads and the parsed .npz go (default ``default_cache_dir()``).
    download: fetch from the mirrors when no local copy is found.
    urls: base URLs to download from instead of ``MNIST_MIRRORS`` (tried in order).
    checksums: overrides of the expected checksums, by file name (sha256 of the
        decompressed IDX file, or an MD5) or by array key (sha256 of the array's bytes).
    """
    return _load(_mnist_spec(), path, cache_dir, download, urls, checksums, progress, timeout)


def load_binarized_mnist(path=None, cache_dir=None, download=True, urls=None, checksums=None,
                         progress=True, timeout=60.0):
    """Statically binarized MNIST (Salakhutdinov & Murray 2008; Larochelle & Murray 2011):
    dict(train=(50000, 784), valid=(10000, 784), test=(10000, 784)), uint8 in {0, 1},
    rows are 28x28 images in row-major order. No labels; ``test`` is sorted by class (see
    ``binarized_mnist_test_labels``), ``train``/``valid`` are shuffled.

    Arguments as in ``load_mnist``; the raw files are the three .amat files, checked by MD5.
    """
    return _load(_binarized_spec(), path, cache_dir, download, urls, checksums, progress, timeout)


def binarized_mnist_test_labels():
    """Labels of the binarized MNIST test split, which is sorted by class:
    ``np.repeat(arange(10), BINARIZED_TEST_CLASS_COUNTS)`` (980 zeros, then 1135 ones, ...).
    train and valid have no usable labels."""
    return np.repeat(np.arange(10, dtype=np.uint8), BINARIZED_TEST_CLASS_COUNTS)


def default_cache_dir():
    """$XDG_CACHE_HOME/tinydgm if XDG_CACHE_HOME is set, else ~/.cache/tinydgm."""
    base = os.environ.get("XDG_CACHE_HOME")
    return pathlib.Path(base) / "tinydgm" if base else pathlib.Path.home() / ".cache" / "tinydgm"


# ----------------------------------------------------------------------------- dataset specs

class _Spec(NamedTuple):
    title: str               # "MNIST" or "binarized MNIST", for messages
    npz: str                 # name of the .npz in a folder and in the cache
    files: dict              # array key -> raw file name
    shapes: dict             # array key -> expected shape
    max_value: dict          # array key -> largest allowed value
    file_checksums: dict     # raw file name -> hex digest
    array_checksums: dict    # array key -> sha256 of the array bytes
    mirrors: tuple
    gzipped: bool            # raw files are downloaded as <name>.gz
    parse: object            # parse(data bytes, what, shape) -> array


def _mnist_spec():
    return _Spec("MNIST", MNIST_NPZ, MNIST_FILES, MNIST_SHAPES, MNIST_MAX, MNIST_FILE_SHA256,
                 MNIST_ARRAY_SHA256, MNIST_MIRRORS, True, parse_idx)


def _binarized_spec():
    return _Spec("binarized MNIST", BINARIZED_NPZ, BINARIZED_FILES, BINARIZED_SHAPES, BINARIZED_MAX,
                 BINARIZED_FILE_MD5, BINARIZED_ARRAY_SHA256, BINARIZED_MIRRORS, False, parse_amat)


# ----------------------------------------------------------------------------- resolution

def _load(spec, path, cache_dir, download, urls, checksums, progress, timeout):
    overrides = dict(checksums or {})
    unknown = sorted(set(overrides) - set(spec.files) - set(spec.files.values()))
    if unknown:
        raise ValueError(f"{spec.title}: checksums has unknown keys {unknown}; known: file names "
                         f"{list(spec.files.values())} and array keys {list(spec.files)}")
    spec = spec._replace(
        file_checksums={name: overrides.get(name, spec.file_checksums.get(name))
                        for name in spec.files.values()},
        array_checksums={key: overrides.get(key, spec.array_checksums.get(key)) for key in spec.files})
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    searched = []

    if path is not None:
        path = pathlib.Path(path).expanduser()
        if path.is_file():
            if path.suffix != ".npz":
                raise DataError(f"{spec.title}: path must be an .npz file or a folder holding "
                                f"{spec.npz} or the raw files {list(spec.files.values())}; got the file {path}")
            return _from_npz(spec, path)
        if not path.is_dir():
            raise FileNotFoundError(f"{spec.title}: path {path} does not exist")
        found = _from_folder(spec, path, cache)
        if found is None:
            raise FileNotFoundError(f"{spec.title}: the folder {path} holds neither {spec.npz} nor "
                                    f"all of {_raw_names(spec)}")
        return found

    env = os.environ.get(ENV_VAR)
    if env:
        folder = pathlib.Path(env).expanduser()
        if not folder.is_dir():
            raise NotADirectoryError(f"{spec.title}: the environment variable {ENV_VAR}={env!r} "
                                     "must name a folder")
        found = _from_folder(spec, folder, cache)
        if found is not None:
            return found
        searched.append(f"{folder} (from {ENV_VAR})")

    found = _from_folder(spec, cache, cache) if cache.is_dir() else None
    if found is not None:
        return found
    searched.append(f"{cache} (cache)")

    if not download:
        raise FileNotFoundError(
            f"{spec.title}: no local copy found (looked for {spec.npz} or {_raw_names(spec)} in "
            f"{'; '.join(searched)}) and download=False; pass path=, set {ENV_VAR} to a folder "
            "holding the files, or allow the download")
    mirrors = spec.mirrors if urls is None else ((urls,) if isinstance(urls, str) else tuple(urls))
    for name in spec.files.values():
        if _local_raw(cache, name) is None:
            remote = name + ".gz" if spec.gzipped else name
            download_file([_join(base, remote) for base in mirrors], cache / remote,
                          spec.file_checksums[name], gzipped=spec.gzipped, progress=progress,
                          timeout=timeout)
    return _from_folder(spec, cache, cache)


def _raw_names(spec):
    suffix = "[.gz]" if spec.gzipped else ""
    return [name + suffix for name in spec.files.values()]


def _join(base, name):
    return base.rstrip("/") + "/" + name


def _local_raw(folder, name):
    """The file ``name`` or ``name.gz`` in folder, or None."""
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _from_folder(spec, folder, cache):
    """The arrays from ``folder``'s .npz, else from its raw files (then cached), else None."""
    if (folder / spec.npz).is_file():
        return _from_npz(spec, folder / spec.npz)
    raw = {key: _local_raw(folder, name) for key, name in spec.files.items()}
    if any(p is None for p in raw.values()):
        return None
    arrays = {key: _read_raw(spec, key, p) for key, p in raw.items()}
    _cache_npz(spec, cache, arrays)
    return arrays


def _from_npz(spec, path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in spec.files if key not in archive.files]
            if missing:
                raise DataError(f"{spec.title}: {path} lacks the arrays {missing} "
                                f"(it holds {archive.files}; expected {list(spec.files)})")
            arrays = {key: archive[key] for key in spec.files}
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{spec.title}: cannot read {path} as an .npz archive "
                        f"(truncated or corrupt?): {err}") from None
    for key, array in arrays.items():
        _validate(spec, key, array, source=path)
        _verify(hashlib.sha256(array.tobytes()).hexdigest(), spec.array_checksums[key],
                f"{spec.title} {key} in {path} (sha256 of the array bytes)")
    return arrays


def _read_raw(spec, key, path):
    name = spec.files[key]
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = _gunzip(data, str(path))
    array = spec.parse(data, f"{spec.title} {name} ({path})", spec.shapes[key])
    _validate(spec, key, array, source=path)
    expected = spec.file_checksums[name]
    _verify(_hexdigest(data, expected), expected,
            f"{spec.title} {path}" + (" (decompressed)" if path.suffix == ".gz" else ""))
    return array


def _validate(spec, key, array, source):
    what = f"{spec.title} {key}"
    if array.dtype != np.uint8:
        raise DataError(f"{what}: expected dtype uint8, got {array.dtype} (in {source})")
    if tuple(array.shape) != tuple(spec.shapes[key]):
        raise DataError(f"{what}: expected shape {tuple(spec.shapes[key])}, got {tuple(array.shape)} "
                        f"(in {source})")
    if array.size and int(array.max()) > spec.max_value[key]:
        raise DataError(f"{what}: values must lie in 0..{spec.max_value[key]}, found {int(array.max())} "
                        f"(in {source})")


def _cache_npz(spec, cache, arrays):
    """Write the parsed arrays to cache/<npz> atomically; a read-only cache only warns."""
    target = cache / spec.npz
    if target.exists():
        return
    try:
        atomic_write(target, lambda f: np.savez_compressed(f, **arrays))
    except OSError as err:
        warnings.warn(f"{spec.title}: could not cache the parsed arrays in {target}: {err}", stacklevel=3)


# ----------------------------------------------------------------------------- parsers

def _gunzip(data, what):
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(f"{what}: not a complete gzip file (truncated or corrupt): {err}") from None


def parse_idx(data, what, shape):
    """Parse an IDX file of unsigned bytes (LeCun's format):

        magic = 0x00 0x00 0x08 <ndim>  (0x08: uint8), then ndim big-endian uint32 sizes,
        then prod(sizes) bytes in C order.
    MNIST images: magic 2051 (3 dims N, 28, 28); labels: magic 2049 (1 dim N). The sizes
    must equal ``shape``; a short payload is reported as truncated.
    """
    shape = tuple(shape)
    expected_magic = 0x0800 + len(shape)
    if len(data) < 4:
        raise DataError(f"{what}: truncated IDX file ({len(data)} bytes, no header)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{what}: bad IDX magic number {magic}, expected {expected_magic} "
                        f"(uint8 data with {len(shape)} dimensions)")
    header = 4 + 4 * len(shape)
    if len(data) < header:
        raise DataError(f"{what}: truncated IDX file ({len(data)} bytes, header needs {header})")
    dims = struct.unpack(f">{len(shape)}I", data[4:header])
    if dims != shape:
        raise DataError(f"{what}: expected shape {shape}, got {dims} (from the IDX header)")
    need, have = int(np.prod(dims)), len(data) - header
    if have < need:
        raise DataError(f"{what}: truncated IDX file: the header promises {need} bytes of data "
                        f"for shape {dims}, only {have} follow")
    if have > need:
        raise DataError(f"{what}: {have - need} unexpected bytes after the {need} bytes of data")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def parse_amat(data, what, shape):
    """Parse a binarized-MNIST .amat text file: one image per line, 784 values 0/1 separated
    by spaces. The exact layout "v v ... v\\n" (2 bytes per value) is read in one vectorized
    pass; any other whitespace goes through NumPy's text parser."""
    n, d = shape
    if len(data) == n * 2 * d:                             # the exact layout of Larochelle's files
        chars = np.frombuffer(data, dtype=np.uint8).reshape(n, 2 * d)
        values = chars[:, ::2] - np.uint8(ord("0"))         # non-digits wrap to large values
        if ((chars[:, 1:-1:2] == ord(" ")).all() and (chars[:, -1] == ord("\n")).all()
                and values.max(initial=0) <= 1):
            return np.ascontiguousarray(values)
    rows = sum(1 for line in data.splitlines() if line.strip())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")                 # unparsable text -> an error, not a warning
            values = np.fromstring(data.decode("ascii"), dtype=np.float64, sep=" ")
    except (ValueError, UnicodeDecodeError, DeprecationWarning) as err:
        raise DataError(f"{what}: not a text file of numbers: {err}") from None
    if rows == 0 or values.size % rows:
        raise DataError(f"{what}: expected shape {tuple(shape)}, got {rows} lines with "
                        f"{values.size} values in all (lines of unequal length?)")
    if (rows, values.size // rows) != tuple(shape):
        raise DataError(f"{what}: expected shape {tuple(shape)}, got {(rows, values.size // rows)}")
    if not np.isin(values, (0.0, 1.0)).all():
        raise DataError(f"{what}: values must be 0 or 1")
    return values.reshape(shape).astype(np.uint8)


# ----------------------------------------------------------------------------- checksums

def _algorithm(expected):
    """md5 for 32 hex digits, sha256 for 64."""
    if expected is None or len(expected) not in (32, 64):
        raise ValueError(f"a checksum must be 32 (MD5) or 64 (sha256) hex digits, got {expected!r}")
    return "md5" if len(expected) == 32 else "sha256"


def _hexdigest(data, expected):
    return hashlib.new(_algorithm(expected), data).hexdigest()


def _verify(actual, expected, what):
    if actual != expected.lower():
        raise ChecksumError(f"checksum mismatch for {what}: expected {_algorithm(expected)} {expected}, "
                            f"got {actual}")


def _file_digest(path, expected, gzipped):
    h = hashlib.new(_algorithm(expected))
    opener = gzip.open if gzipped else open
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- atomic writes

def atomic_write(path, write, verify=None):
    """Create ``path`` atomically: ``write(f)`` fills a temporary file in the same folder,
    which is flushed to disk, checked by ``verify(temporary_path)`` if given, and renamed
    over ``path`` (os.replace). If ``write`` or ``verify`` raises (or the process is
    interrupted by an exception), the temporary file is removed and ``path`` is untouched."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(pathlib.Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


# ----------------------------------------------------------------------------- download

def download_file(urls, dest, checksum, gzipped=False, progress=True, timeout=60.0):
    """Download the first of ``urls`` (one URL or a list of mirrors) that works to ``dest``.

    The bytes go to a temporary file next to ``dest`` with a tqdm progress bar; the file
    must have the announced Content-Length and match ``checksum`` (MD5: 32 hex digits,
    sha256: 64; of the decompressed content when ``gzipped``), else the temporary file is
    removed and the next mirror is tried. Only a verified file is renamed to ``dest``.
    Raises ChecksumError / DownloadError naming each URL and what went wrong when every
    mirror fails; then nothing was written.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError("download_file: no URL given")
    _algorithm(checksum)
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            _download_one(url, dest, checksum, gzipped, progress, timeout)
            return dest
        except (DownloadError, ChecksumError) as err:
            errors.append(err)
    if len(errors) == 1:
        raise errors[0]
    kind = ChecksumError if all(isinstance(e, ChecksumError) for e in errors) else DownloadError
    raise kind(f"download of {dest.name} failed from every mirror; nothing was written to {dest}:\n  - "
               + "\n  - ".join(str(e) for e in errors))


def _download_one(url, dest, checksum, gzipped, progress, timeout):
    nothing = f"nothing was written to {dest} (the temporary file was removed)"

    def fetch(f):
        from tqdm.auto import tqdm
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length is not None else None
                received = 0
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=f"downloading {dest.name}", disable=not progress) as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        f.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:   # incl. timeouts
            raise DownloadError(f"download of {url} failed: {err}; {nothing}") from None
        if total is not None and received != total:
            raise DownloadError(f"download of {url} was interrupted: received {received} of {total} "
                                f"bytes; {nothing}")

    def verify(tmp):
        try:
            actual = _file_digest(tmp, checksum, gzipped)
        except (EOFError, OSError, zlib.error) as err:
            raise DownloadError(f"download of {url} is not a complete gzip file ({err}); {nothing}") from None
        if actual != checksum.lower():
            raise ChecksumError(f"checksum mismatch for {url}: expected {_algorithm(checksum)} {checksum}, "
                                f"got {actual}" + (" (of the decompressed content)" if gzipped else "")
                                + f"; {nothing}")

    atomic_write(dest, fetch, verify)
