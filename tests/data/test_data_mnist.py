"""tinydgm/data/mnist.py (and images.py): the MNIST loaders, on small IDX/.amat/.npz fixtures
built here (so they run on a fresh clone), a local HTTP server on 127.0.0.1 for the
download path (good, corrupted and dropped transfers), and, where the project's
shared/data folder exists, the real files against the facts of its README."""
import gzip
import hashlib
import http.server
import os
import pathlib
import struct
import threading

import numpy as np
import pytest

from tinydgm.data import images, mnist
from paths import DATA_DIR

SHARED = DATA_DIR
HAVE_SHARED = (SHARED / "mnist.npz").is_file() and (SHARED / "binarized_mnist.npz").is_file()
needs_shared = pytest.mark.skipif(
    not HAVE_SHARED, reason=f"the full MNIST files are not here ({SHARED}/mnist.npz, binarized_mnist.npz: "
                            "the project's shared/data folder, or set TINYDGM_DATA)")

SMALL_MNIST = {"x_train": (5, 28, 28), "y_train": (5,), "x_test": (3, 28, 28), "y_test": (3,)}
SMALL_BINARIZED = {"train": (6, 784), "valid": (3, 784), "test": (4, 784)}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def idx_bytes(array):
    """An IDX file of uint8: magic 0x0800 + ndim, big-endian sizes, then the bytes."""
    return struct.pack(f">I{array.ndim}I", 0x0800 + array.ndim, *array.shape) + array.tobytes()


def amat_bytes(array):
    """Larochelle's .amat layout: 784 values separated by spaces, one row per line."""
    chars = np.full((array.shape[0], 2 * array.shape[1]), ord(" "), dtype=np.uint8)
    chars[:, ::2] = array + ord("0")
    chars[:, -1] = ord("\n")
    return chars.tobytes()


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """No test reads the user's TINYDGM_DATA or writes to ~/.cache."""
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


class Fixture:
    """Small MNIST-shaped and binarized-MNIST-shaped data with the files and checksums the
    loaders expect (the module's expected shapes are patched to these small ones)."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.mnist = {k: rng.integers(0, 256 if k[0] == "x" else 10, size=s, dtype=np.uint8)
                      for k, s in SMALL_MNIST.items()}
        self.binarized = {k: rng.integers(0, 2, size=s, dtype=np.uint8) for k, s in SMALL_BINARIZED.items()}
        self.idx = {mnist.MNIST_FILES[k]: idx_bytes(a) for k, a in self.mnist.items()}
        self.amat = {mnist.BINARIZED_FILES[k]: amat_bytes(a) for k, a in self.binarized.items()}
        self.mnist_checksums = {**{name: sha256(b) for name, b in self.idx.items()},
                                **{k: sha256(a.tobytes()) for k, a in self.mnist.items()}}
        self.binarized_checksums = {**{name: hashlib.md5(b).hexdigest() for name, b in self.amat.items()},
                                    **{k: sha256(a.tobytes()) for k, a in self.binarized.items()}}

    def write_idx(self, folder, gz=()):
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.idx.items():
            if name in gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        return folder

    def write_amat(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.amat.items():
            (folder / name).write_bytes(data)
        return folder

    def load_mnist(self, **kwargs):
        kwargs.setdefault("checksums", self.mnist_checksums)
        kwargs.setdefault("progress", False)
        return mnist.load_mnist(**kwargs)

    def load_binarized(self, **kwargs):
        kwargs.setdefault("checksums", self.binarized_checksums)
        kwargs.setdefault("progress", False)
        return mnist.load_binarized_mnist(**kwargs)


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_SHAPES", SMALL_MNIST)
    monkeypatch.setattr(mnist, "BINARIZED_SHAPES", SMALL_BINARIZED)
    return Fixture()


def assert_arrays_equal(got, expected):
    assert set(got) == set(expected)
    for key in expected:
        assert got[key].dtype == np.uint8
        np.testing.assert_array_equal(got[key], expected[key])


def leftovers(folder):
    """Temporary files left in a folder (there must never be any)."""
    return sorted(p.name for p in pathlib.Path(folder).rglob("*.part"))


# ----------------------------------------------------------------------------- local HTTP server

class Server:
    """http.server on 127.0.0.1 (a free port) in a thread. Routes: /good/<name> serves
    files[name]; /corrupt/<name> serves corrupt.get(name, files[name]); /drop/<name>
    announces the full length, sends half and closes; /nolength/<name> sends half without a
    Content-Length. Records the paths asked for."""

    def __init__(self, files, corrupt=None):
        self.files, self.corrupt, self.requests = files, corrupt or {}, []
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                state.requests.append(self.path)
                mode, _, name = self.path.lstrip("/").partition("/")
                if name not in state.files or mode not in ("good", "corrupt", "drop", "nolength"):
                    self.send_error(404)
                    return
                data = state.corrupt.get(name, state.files[name]) if mode == "corrupt" else state.files[name]
                self.send_response(200)
                if mode != "nolength":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data if mode in ("good", "corrupt") else data[:len(data) // 2])
                self.wfile.flush()              # HTTP/1.0: the connection closes after the handler

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, mode):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mode}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve():
    servers = []

    def start(files, corrupt=None):
        servers.append(Server(files, corrupt))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


# ----------------------------------------------------------------------------- parsers

def test_parse_idx(small):
    x = small.mnist["x_train"]
    data = idx_bytes(x)
    np.testing.assert_array_equal(mnist.parse_idx(data, "x", (5, 28, 28)), x)
    with pytest.raises(mnist.DataError, match=r"x: expected shape \(6, 28, 28\), got \(5, 28, 28\) \(from the IDX header\)"):
        mnist.parse_idx(data, "x", (6, 28, 28))
    with pytest.raises(mnist.DataError, match="bad IDX magic number 2049, expected 2051"):
        mnist.parse_idx(idx_bytes(small.mnist["y_train"]), "x", (5, 28, 28))
    with pytest.raises(mnist.DataError, match=r"truncated IDX file: the header promises 3920 bytes of data "
                                              r"for shape \(5, 28, 28\), only 3919 follow"):
        mnist.parse_idx(data[:-1], "x", (5, 28, 28))
    with pytest.raises(mnist.DataError, match="truncated IDX file"):
        mnist.parse_idx(data[:10], "x", (5, 28, 28))
    with pytest.raises(mnist.DataError, match="truncated IDX file"):
        mnist.parse_idx(data[:2], "x", (5, 28, 28))
    with pytest.raises(mnist.DataError, match="1 unexpected bytes after"):
        mnist.parse_idx(data + b"\0", "x", (5, 28, 28))


def test_parse_amat(small):
    b = small.binarized["train"]
    data = amat_bytes(b)
    assert len(data) == 6 * 1568
    np.testing.assert_array_equal(mnist.parse_amat(data, "t", (6, 784)), b)
    other = b"\r\n".join(b" ".join(str(v).encode() for v in row) + b" " for row in b)   # other whitespace
    np.testing.assert_array_equal(mnist.parse_amat(other, "t", (6, 784)), b)
    with pytest.raises(mnist.DataError, match=r"binarized MNIST train: expected shape \(6, 784\), got \(5, 784\)"):
        mnist.parse_amat(amat_bytes(b[:5]), "binarized MNIST train", (6, 784))
    with pytest.raises(mnist.DataError, match="values must be 0 or 1"):
        mnist.parse_amat(amat_bytes(b).replace(b"1", b"2", 1), "t", (6, 784))
    with pytest.raises(mnist.DataError, match="not a text file of numbers"):
        mnist.parse_amat(data.replace(b"0", b"x", 1), "t", (6, 784))
    with pytest.raises(mnist.DataError, match="lines of unequal length"):
        mnist.parse_amat(data[:-4] + b"\n", "t", (6, 784))


# ----------------------------------------------------------------------------- local sources

def test_load_mnist_from_idx_files_raw_and_gz(small, tmp_path):
    folder = small.write_idx(tmp_path / "raw", gz={"train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    cache = tmp_path / "cache"
    got = small.load_mnist(path=folder, cache_dir=cache)
    assert_arrays_equal(got, small.mnist)
    assert got["x_train"].flags.writeable
    # the parsed arrays are cached as mnist.npz, written atomically
    assert sorted(p.name for p in cache.iterdir()) == ["mnist.npz"] and not leftovers(cache)
    assert_arrays_equal(dict(np.load(cache / "mnist.npz")), small.mnist)
    assert_arrays_equal(small.load_mnist(cache_dir=cache, download=False), small.mnist)


def test_load_binarized_from_amat_files_and_npz(small, tmp_path):
    folder = small.write_amat(tmp_path / "amat")
    cache = tmp_path / "cache"
    assert_arrays_equal(small.load_binarized(path=folder, cache_dir=cache), small.binarized)
    assert (cache / "binarized_mnist.npz").is_file() and not leftovers(cache)
    # an .npz file given directly, and a folder whose .npz wins over raw files
    np.savez_compressed(tmp_path / "b.npz", **small.binarized)
    assert_arrays_equal(small.load_binarized(path=tmp_path / "b.npz", cache_dir=cache), small.binarized)
    assert_arrays_equal(small.load_binarized(path=cache, download=False), small.binarized)


def test_npz_arrays_are_verified_by_sha256(small, tmp_path):
    bad = dict(small.mnist)
    bad["x_test"] = bad["x_test"].copy()
    bad["x_test"][0, 0, 0] ^= 1
    np.savez(tmp_path / "mnist.npz", **bad)
    with pytest.raises(mnist.ChecksumError) as info:
        small.load_mnist(path=tmp_path / "mnist.npz", cache_dir=tmp_path / "c")
    message = str(info.value)
    assert "MNIST x_test" in message and small.mnist_checksums["x_test"] in message
    assert sha256(bad["x_test"].tobytes()) in message


def test_idx_checksum_mismatch_raises_and_caches_nothing(small, tmp_path):
    folder = small.write_idx(tmp_path / "raw", gz={"t10k-images-idx3-ubyte"})
    tampered = bytearray(small.idx["t10k-images-idx3-ubyte"])
    tampered[-1] ^= 0xFF                                  # same structure, one pixel changed
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(tampered)))
    with pytest.raises(mnist.ChecksumError) as info:
        small.load_mnist(path=folder, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz (decompressed)" in message
    assert small.mnist_checksums["t10k-images-idx3-ubyte"] in message and sha256(bytes(tampered)) in message
    assert not (tmp_path / "cache").exists()


def test_amat_md5_mismatch(small, tmp_path):
    folder = small.write_amat(tmp_path / "amat")
    data = small.amat["binarized_mnist_valid.amat"]
    (folder / "binarized_mnist_valid.amat").write_bytes(data.replace(b"0", b"1", 1))
    expected = small.binarized_checksums["binarized_mnist_valid.amat"]
    with pytest.raises(mnist.ChecksumError, match="expected md5 " + expected):
        small.load_binarized(path=folder, cache_dir=tmp_path / "cache")


def test_truncated_files_raise(small, tmp_path):
    folder = small.write_idx(tmp_path / "gz", gz=set(small.idx))
    gz = (folder / "train-labels-idx1-ubyte.gz").read_bytes()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gz[:len(gz) // 2])
    with pytest.raises(mnist.DataError, match=r"train-labels-idx1-ubyte\.gz: not a complete gzip file"):
        small.load_mnist(path=folder, cache_dir=tmp_path / "c")
    folder = small.write_idx(tmp_path / "raw")
    (folder / "train-images-idx3-ubyte").write_bytes(small.idx["train-images-idx3-ubyte"][:-100])
    with pytest.raises(mnist.DataError, match="truncated IDX file"):
        small.load_mnist(path=folder, cache_dir=tmp_path / "c")
    np.savez_compressed(tmp_path / "full.npz", **small.mnist)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "full.npz").read_bytes()[:300])
    with pytest.raises(mnist.DataError, match=r"cannot read .*cut\.npz as an \.npz archive"):
        small.load_mnist(path=tmp_path / "cut.npz", cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(train=d["train"][:5]), r"binarized MNIST train: expected shape \(6, 784\), got \(5, 784\)"),
    (lambda d: d.update(valid=d["valid"].astype(np.int64)), "binarized MNIST valid: expected dtype uint8, got int64"),
    (lambda d: d.update(test=d["test"] * 255), r"binarized MNIST test: values must lie in 0\.\.1, found 255"),
    (lambda d: d.pop("valid"), r"lacks the arrays \['valid'\]"),
])
def test_wrong_npz_contents_raise(small, tmp_path, change, match):
    arrays = dict(small.binarized)
    change(arrays)
    np.savez(tmp_path / "binarized_mnist.npz", **arrays)
    with pytest.raises(mnist.DataError, match=match):
        small.load_binarized(path=tmp_path, cache_dir=tmp_path / "c")


def test_wrong_label_range_and_shapes_in_mnist(small, tmp_path):
    arrays = dict(small.mnist, y_test=np.array([1, 2, 10], dtype=np.uint8))
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(mnist.DataError, match=r"MNIST y_test: values must lie in 0\.\.9, found 10"):
        small.load_mnist(path=tmp_path, cache_dir=tmp_path / "c")
    np.savez(tmp_path / "mnist.npz", **dict(small.mnist, x_train=small.mnist["x_train"][:, :27]))
    with pytest.raises(mnist.DataError, match=r"MNIST x_train: expected shape \(5, 28, 28\), got \(5, 27, 28\)"):
        small.load_mnist(path=tmp_path, cache_dir=tmp_path / "c")


def test_bad_paths_and_arguments(small, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        small.load_mnist(path=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds neither mnist\.npz nor all of"):
        small.load_mnist(path=tmp_path / "empty")
    small.write_idx(tmp_path / "raw")
    with pytest.raises(mnist.DataError, match=r"path must be an \.npz file or a folder"):
        small.load_mnist(path=tmp_path / "raw" / "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match=r"checksums has unknown keys \['x_trian'\]"):
        mnist.load_mnist(path=tmp_path / "raw", checksums={"x_trian": "0" * 64})


# ----------------------------------------------------------------------------- resolution order

def test_resolution_order_path_then_env_then_cache(small, tmp_path, monkeypatch):
    """Each source that must not be used is corrupt, so the load succeeds only if the
    right one is read."""
    good = small.write_idx(tmp_path / "good")
    corrupt = small.write_idx(tmp_path / "corrupt")
    (corrupt / "train-labels-idx1-ubyte").write_bytes(idx_bytes((small.mnist["y_train"] + 1) % 10))
    cache_good, cache_corrupt = tmp_path / "cache_good", tmp_path / "cache_corrupt"
    small.load_mnist(path=good, cache_dir=cache_good)                  # builds a good cache
    cache_corrupt.mkdir()
    np.savez(cache_corrupt / "mnist.npz", **dict(small.mnist, y_train=(small.mnist["y_train"] + 1) % 10))

    monkeypatch.setenv(mnist.ENV_VAR, str(corrupt))
    assert_arrays_equal(small.load_mnist(path=good, cache_dir=cache_corrupt), small.mnist)   # 1. path
    with pytest.raises(mnist.ChecksumError):
        small.load_mnist(cache_dir=cache_good)                        # the env folder comes before the cache
    monkeypatch.setenv(mnist.ENV_VAR, str(good))
    assert_arrays_equal(small.load_mnist(cache_dir=cache_corrupt), small.mnist)              # 2. env
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path / "empty_env"))
    (tmp_path / "empty_env").mkdir()
    assert_arrays_equal(small.load_mnist(cache_dir=cache_good, download=False), small.mnist)  # 3. cache
    with pytest.raises(mnist.ChecksumError):
        small.load_mnist(cache_dir=cache_corrupt, download=False)
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path / "good" / "train-images-idx3-ubyte"))
    with pytest.raises(NotADirectoryError, match=r"TINYDGM_DATA=.*must name a folder"):
        small.load_mnist(cache_dir=cache_good)
    monkeypatch.setenv(mnist.ENV_VAR, str(good))
    with pytest.raises(FileNotFoundError):                            # an explicit path never falls through
        small.load_mnist(path=tmp_path / "missing", cache_dir=cache_good)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert mnist.default_cache_dir() == tmp_path / "x" / "tinydgm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist.default_cache_dir() == tmp_path / "home" / ".cache" / "tinydgm"


def test_default_cache_is_used_and_nothing_found_says_where_it_looked(small, tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        small.load_binarized(download=False)
    message = str(info.value)
    assert "download=False" in message and "TINYDGM_DATA" in message
    assert str(tmp_path / "xdg" / "tinydgm") in message
    small.write_amat(tmp_path / "xdg" / "tinydgm")                    # $XDG_CACHE_HOME/tinydgm
    assert_arrays_equal(small.load_binarized(download=False), small.binarized)


def test_a_cache_that_cannot_be_written_only_warns(small, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")
    monkeypatch.setattr(mnist, "atomic_write", refuse)
    folder = small.write_amat(tmp_path / "amat")
    with pytest.warns(UserWarning, match="could not cache the parsed arrays.*read-only"):
        assert_arrays_equal(small.load_binarized(path=folder, cache_dir=tmp_path / "c"), small.binarized)


# ----------------------------------------------------------------------------- atomic writes

def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    mnist.atomic_write(target, lambda f: f.write(b"old"))
    assert target.read_bytes() == b"old"

    def half_then_fail(f):
        f.write(b"partial")
        raise KeyboardInterrupt                    # an interruption, not only errors
    with pytest.raises(KeyboardInterrupt):
        mnist.atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]

    def reject(path):
        assert path.read_bytes() == b"new" and path != target
        raise ValueError("rejected")
    with pytest.raises(ValueError, match="rejected"):
        mnist.atomic_write(tmp_path / "g.bin", lambda f: f.write(b"new"), verify=reject)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


# ----------------------------------------------------------------------------- downloads

@pytest.fixture
def gz_files(small):
    return {name + ".gz": gzip.compress(data) for name, data in small.idx.items()}


def test_download_builds_the_cache_and_reuses_it(small, tmp_path, serve, gz_files, capsys):
    server = serve(gz_files)
    cache = tmp_path / "cache"
    got = small.load_mnist(cache_dir=cache, urls=[server.url("good")], progress=True, timeout=10)
    assert_arrays_equal(got, small.mnist)
    assert sorted(server.requests) == sorted(f"/good/{name}" for name in gz_files)
    assert sorted(p.name for p in cache.iterdir()) == sorted([*gz_files, "mnist.npz"])
    assert "downloading train-images-idx3-ubyte.gz" in capsys.readouterr().err     # the tqdm bar
    stamp = (cache / "mnist.npz").stat().st_mtime_ns
    dead = f"http://127.0.0.1:{server.httpd.server_address[1]}/gone/"
    assert_arrays_equal(small.load_mnist(cache_dir=cache, urls=[dead]), small.mnist)
    assert len(server.requests) == 4 and (cache / "mnist.npz").stat().st_mtime_ns == stamp
    # without the .npz, the verified raw files in the cache are parsed again (no download)
    (cache / "mnist.npz").unlink()
    assert_arrays_equal(small.load_mnist(cache_dir=cache, urls=[dead]), small.mnist)
    assert len(server.requests) == 4


def test_download_of_a_corrupted_copy_raises_and_writes_nothing(small, tmp_path, serve, gz_files):
    tampered = bytearray(small.idx["train-images-idx3-ubyte"])
    tampered[1000] ^= 1
    server = serve(gz_files, corrupt={"train-images-idx3-ubyte.gz": gzip.compress(bytes(tampered))})
    cache = tmp_path / "cache"
    url = server.url("corrupt") + "train-images-idx3-ubyte.gz"
    with pytest.raises(mnist.ChecksumError) as info:
        small.load_mnist(cache_dir=cache, urls=[server.url("corrupt")], timeout=10)
    message = str(info.value)
    assert url in message and small.mnist_checksums["train-images-idx3-ubyte"] in message
    assert sha256(bytes(tampered)) in message and "nothing was written" in message
    assert list(cache.iterdir()) == []                                # no file, no temporary


@pytest.mark.parametrize("mode, match", [
    ("drop", r"was interrupted: received \d+ of \d+ bytes; nothing was written"),
    ("nolength", r"is not a complete gzip file .*nothing was written"),
])
def test_interrupted_download_raises_and_writes_nothing(small, tmp_path, serve, gz_files, mode, match):
    server = serve(gz_files)
    cache = tmp_path / "cache"
    with pytest.raises(mnist.DownloadError, match=match) as info:
        small.load_mnist(cache_dir=cache, urls=[server.url(mode)], timeout=10)
    assert server.url(mode) + "train-images-idx3-ubyte.gz" in str(info.value)
    assert list(cache.iterdir()) == []


def test_download_of_amat_without_length_checked_by_md5(small, tmp_path, serve):
    server = serve(small.amat)
    with pytest.raises(mnist.ChecksumError, match=r"expected md5 .* got .*nothing was written"):
        small.load_binarized(cache_dir=tmp_path / "c", urls=[server.url("nolength")], timeout=10)
    assert list((tmp_path / "c").iterdir()) == []
    got = small.load_binarized(cache_dir=tmp_path / "c", urls=[server.url("good")], timeout=10)
    assert_arrays_equal(got, small.binarized)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted([*small.amat, "binarized_mnist.npz"])


def test_mirrors_are_tried_in_order(small, tmp_path, serve, gz_files):
    server = serve(gz_files)
    missing = server.url("missing")                                   # answers 404
    got = small.load_mnist(cache_dir=tmp_path / "a", urls=[missing, server.url("good")], timeout=10)
    assert_arrays_equal(got, small.mnist)
    with pytest.raises(mnist.DownloadError) as info:
        small.load_mnist(cache_dir=tmp_path / "b", urls=[missing, server.url("drop")], timeout=10)
    message = str(info.value)
    assert "failed from every mirror" in message and "HTTP Error 404" in message and "interrupted" in message
    assert list((tmp_path / "b").iterdir()) == []


def test_download_file_directly(tmp_path, serve):
    payload = b"tinydgm" * 1000
    server = serve({"blob": payload})
    target = tmp_path / "d" / "blob"
    mnist.download_file(server.url("good") + "blob", target, sha256(payload), progress=False)
    assert target.read_bytes() == payload
    with pytest.raises(ValueError, match="32 \\(MD5\\) or 64 \\(sha256\\) hex digits"):
        mnist.download_file(server.url("good") + "blob", tmp_path / "e", "abc")


# ----------------------------------------------------------------------------- the real files

def test_binarized_test_labels_are_the_sorted_class_counts():
    labels = mnist.binarized_mnist_test_labels()
    assert labels.dtype == np.uint8 and labels.shape == (10000,)
    assert (np.diff(labels) >= 0).all()
    assert np.bincount(labels).tolist() == list(mnist.BINARIZED_TEST_CLASS_COUNTS)


@needs_shared
def test_real_mnist_matches_the_readme(tmp_path):
    m = mnist.load_mnist(path=SHARED, cache_dir=tmp_path, download=False)   # verifies the array sha256s
    assert {k: v.shape for k, v in m.items()} == mnist.MNIST_SHAPES
    for key, array in m.items():
        assert array.dtype == np.uint8
        assert sha256(array.tobytes()) == mnist.MNIST_ARRAY_SHA256[key]
    assert np.bincount(m["y_train"]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(m["y_test"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert m["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert m["y_test"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    n = m["x_train"].size                                           # exact moments from integer sums
    mean = m["x_train"].sum(dtype=np.int64) / n / 255
    std = np.sqrt(np.square(m["x_train"], dtype=np.uint32).sum(dtype=np.int64) / n / 255 ** 2 - mean ** 2)
    assert round(mean, 5) == 0.13066 and round(std, 5) == 0.30811
    assert round(m["x_test"].mean() / 255, 5) == 0.13251
    # the embedded subset is the first 1000 training / 500 test images
    for split, (xs, ys) in {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}.items():
        small = images.load_embedded(split)
        n = images.EMBEDDED_SIZES[split]
        np.testing.assert_array_equal(small["x"], m[xs][:n])
        np.testing.assert_array_equal(small["y"], m[ys][:n])


@needs_shared
def test_real_binarized_mnist_matches_the_readme(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.ENV_VAR, str(SHARED))                    # through the environment variable
    b = mnist.load_binarized_mnist(cache_dir=tmp_path, download=False)
    assert {k: v.shape for k, v in b.items()} == mnist.BINARIZED_SHAPES
    for key, array in b.items():
        assert array.dtype == np.uint8 and array.max() == 1
        assert sha256(array.tobytes()) == mnist.BINARIZED_ARRAY_SHA256[key]
    assert {k: round(v.mean(), 5) for k, v in b.items()} == {"train": 0.13056, "valid": 0.13113, "test": 0.13251}
    # the test split is sorted by class: each class block's mean image is nearest to that
    # class's mean gray test image
    m = np.load(SHARED / "mnist.npz")
    gray = np.stack([m["x_test"][m["y_test"] == c].reshape(-1, 784).mean(axis=0) / 255 for c in range(10)])
    labels = mnist.binarized_mnist_test_labels()
    blocks = np.stack([b["test"][labels == c].mean(axis=0) for c in range(10)])
    distances = ((blocks[:, None, :] - gray[None]) ** 2).sum(axis=-1)
    assert distances.argmin(axis=1).tolist() == list(range(10))
    assert list(tmp_path.iterdir()) == []                             # npz sources are not re-cached


@needs_shared
def test_full_download_path_with_the_real_checksums(tmp_path, serve):
    """IDX .gz and .amat files regenerated from the shared arrays, served locally, pass the
    module's real checksums (the IDX sha256s and the .amat MD5s of the data README)."""
    m, b = np.load(SHARED / "mnist.npz"), np.load(SHARED / "binarized_mnist.npz")
    files = {name + ".gz": gzip.compress(idx_bytes(m[key]), compresslevel=1)
             for key, name in mnist.MNIST_FILES.items()}
    files.update({name: amat_bytes(b[key]) for key, name in mnist.BINARIZED_FILES.items()})
    server = serve(files)
    got = mnist.load_mnist(cache_dir=tmp_path, urls=[server.url("good")], progress=False, timeout=30)
    for key in mnist.MNIST_FILES:
        np.testing.assert_array_equal(got[key], m[key])
    got = mnist.load_binarized_mnist(cache_dir=tmp_path, urls=[server.url("good")], progress=False, timeout=30)
    for key in mnist.BINARIZED_FILES:
        np.testing.assert_array_equal(got[key], b[key])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*files, "mnist.npz", "binarized_mnist.npz"])
    again = mnist.load_binarized_mnist(cache_dir=tmp_path, download=False)      # from the cached .npz
    assert_arrays_equal(again, {k: b[k] for k in b.files})


# ----------------------------------------------------------------------------- the embedded set

def test_embedded_set():
    d = images.load_embedded()
    assert d["x"].shape == (1000, 28, 28) and d["x"].dtype == np.uint8
    assert d["y"].shape == (1000,) and d["y"].dtype == np.uint8 and d["y"].max() <= 9
    assert d["y"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]      # MNIST's first training labels
    assert np.bincount(d["y"], minlength=10).min() >= 80              # every class is there
    t = images.load_embedded("test")
    assert t["x"].shape == (500, 28, 28) and t["y"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    path = pathlib.Path(images.__file__).parent / images.EMBEDDED_FILE
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ValueError, match="split must be one of"):
        images.load_embedded("valid")


def test_embedded_binarized_is_the_documented_seeded_rule():
    b = images.load_embedded_binarized()
    gray = images.load_embedded()["x"]
    expected = (np.random.default_rng(0).random(gray.shape) < gray / 255).astype(np.uint8)
    np.testing.assert_array_equal(b["x"], expected)
    assert not np.array_equal(images.load_embedded_binarized(seed=1)["x"], b["x"])


def test_embedded_set_is_checked(monkeypatch):
    monkeypatch.setitem(images.EMBEDDED_SHA256, "y_train", "0" * 64)
    with pytest.raises(ValueError, match="array y_train of tinydgm/data/mnist_small.npz is corrupt"):
        images.load_embedded()
