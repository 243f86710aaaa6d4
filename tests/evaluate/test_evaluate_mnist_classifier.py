"""tinydgm/evaluate/mnist_classifier.py: the shipped classifier's accuracy (embedded subset
always, full MNIST when present), its file checks, its inputs, its loss gradient, a quick
training run; and the image metrics (FID and IS analogues) seen through it."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm import evaluate
from tinydgm.data import load_embedded, load_mnist
from tinydgm.evaluate import mnist_classifier as mc
from paths import DATA_DIR

HAS_MNIST = (DATA_DIR / "mnist.npz").is_file()
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason=f"full MNIST not found at {DATA_DIR / 'mnist.npz'} "
                                 "(set TINYDGM_DATA to a folder holding mnist.npz)")


@pytest.fixture(scope="module")
def classifier():
    return evaluate.load_mnist_classifier()


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(path=DATA_DIR, download=False, progress=False)


# ----------------------------------------------------------------------------- the shipped classifier

def test_shipped_file_records_how_it_was_made(classifier):
    meta = classifier.metadata
    assert set(mc.METADATA_KEYS) <= set(meta)
    assert {k: meta[k] for k in mc.SHIPPED} == mc.SHIPPED
    assert meta["train_examples"] == 60000 and "MNIST" in meta["data"]
    assert meta["test_accuracy"] >= 0.98
    assert classifier.hidden.weight.shape == (784, 256) and classifier.out.weight.shape == (256, 10)
    assert not classifier.training
    assert "test accuracy" in repr(classifier)
    assert mc.load_mnist_classifier() is classifier                         # loaded once, cached


def test_shipped_classifier_is_accurate_on_the_embedded_subset(classifier):
    """Always runs: the 500 embedded test images (MNIST test images 0..499) and the 1000
    embedded training images."""
    test, train = load_embedded("test"), load_embedded("train")
    assert mc.classifier_accuracy(classifier, test["x"], test["y"]) >= 0.97
    assert mc.classifier_accuracy(classifier, train["x"], train["y"]) >= 0.98


@needs_mnist
def test_shipped_accuracy_on_the_mnist_test_set_is_the_recorded_one(classifier, mnist):
    accuracy = mc.classifier_accuracy(classifier, mnist["x_test"], mnist["y_test"])
    assert accuracy >= 0.98
    assert accuracy == pytest.approx(classifier.metadata["test_accuracy"], abs=1e-4)


def test_inputs_in_every_accepted_layout_give_the_same_outputs(classifier):
    x = load_embedded("test")["x"][:20]
    want = classifier.probs(x).numpy()
    for other in (x.reshape(20, 784), x.reshape(20, 1, 28, 28), x / 255.0, (x / 255.0).astype(np.float32),
                  td.tensor(x / 255.0)):
        np.testing.assert_allclose(classifier.probs(other).numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(want.sum(1), 1, rtol=1e-5)
    feats = evaluate.classifier_features(x, classifier, batch_size=7)       # batches stitched in order
    np.testing.assert_allclose(feats, classifier.features(x).numpy(), rtol=1e-6)
    assert feats.shape == (20, 256) and (feats >= 0).all()                  # ReLU features


def test_bad_inputs_are_named(classifier):
    with pytest.raises(ValueError, match=r"images must have shape \(N, 28, 28\).*got \(3, 27, 27\)"):
        classifier.probs(np.zeros((3, 27, 27)))
    with pytest.raises(ValueError, match=r"pixels must lie in \[0, 1\].*symmetric_to_unit"):
        classifier.features(np.full((2, 784), -0.5))
    with pytest.raises(TypeError, match="integer pixels 0..255 or floats"):
        classifier.features(np.zeros((2, 784), dtype=bool))
    with pytest.raises(ValueError, match="classifier_probs: batch_size must be a positive integer"):
        evaluate.classifier_probs(np.zeros((2, 784)), classifier, batch_size=0)
    with pytest.raises(ValueError, match=r"classifier_features: images must be a non-empty batch.*\(0, 784\)"):
        evaluate.classifier_features(np.zeros((0, 784)), classifier)


# ----------------------------------------------------------------------------- the file checks

def _tiny_classifier(hidden=4):
    model = mc.MNISTClassifier(hidden, rng=np.random.default_rng(0))
    model.metadata = {k: 0 for k in mc.METADATA_KEYS}
    model.metadata.update(hidden=hidden, data="none", command="none")
    return model


def test_save_and_load_round_trip(tmp_path):
    model = _tiny_classifier()
    path = mc.save_mnist_classifier(model, tmp_path / "c.npz")
    loaded = mc.load_mnist_classifier(path)
    assert loaded.metadata == model.metadata and loaded.hidden_size == 4
    x = np.random.default_rng(1).random((5, 784))
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_damaged_or_foreign_files_are_refused_with_the_reason(tmp_path):
    with pytest.raises(mc.ClassifierFileError, match="no file at"):
        mc.load_mnist_classifier(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    with pytest.raises(mc.ClassifierFileError, match="junk.npz is not a classifier file"):
        mc.load_mnist_classifier(tmp_path / "junk.npz")
    other = td.nn.Linear(3, 2)                                              # a checkpoint of another model
    td.checkpoint.save(tmp_path / "other.npz", other, config={"hidden": 4})
    with pytest.raises(mc.ClassifierFileError, match="not of an MNISTClassifier"):
        mc.load_mnist_classifier(tmp_path / "other.npz")
    model = _tiny_classifier()
    td.checkpoint.save(tmp_path / "meta.npz", model, config={"kind": "tinydgm MNISTClassifier", "hidden": 4})
    with pytest.raises(mc.ClassifierFileError, match="lacks the metadata.*test_accuracy"):
        mc.load_mnist_classifier(tmp_path / "meta.npz")
    model.metadata["hidden"] = 5                                            # weights of 4 units, says 5
    mc.save_mnist_classifier(model, tmp_path / "shape.npz")
    with pytest.raises(mc.ClassifierFileError, match=r"do not fit a 784-5-10 classifier.*hidden.weight.*\(784, 4\)"):
        mc.load_mnist_classifier(tmp_path / "shape.npz")
    with pytest.raises(ValueError, match="metadata lacks"):
        mc.save_mnist_classifier(mc.MNISTClassifier(4), tmp_path / "x.npz")


# ----------------------------------------------------------------------------- training

def _with_weights(model, values, batch):
    """loss with the Tensors ``values`` in place of W1, b1, W2, b2 (for gradcheck)."""
    owners = [(model.hidden, "weight"), (model.hidden, "bias"), (model.out, "weight"), (model.out, "bias")]
    originals = [getattr(m, name) for m, name in owners]
    try:
        for (m, name), value in zip(owners, values):
            object.__setattr__(m, name, value)
        return model.loss(batch)
    finally:
        for (m, name), original in zip(owners, originals):
            object.__setattr__(m, name, original)


def test_gradcheck_cross_entropy_wrt_parameters():
    model = mc.MNISTClassifier(5, rng=np.random.default_rng(0), dtype="float64")
    rng = np.random.default_rng(1)
    batch = (td.tensor(rng.random((6, 784))), td.tensor(rng.integers(0, 10, 6)))
    leaves = [td.tensor(p.data, dtype="float64", requires_grad=True) for p in model.parameters()]
    td.gradcheck(lambda *ps: _with_weights(model, ps, batch), leaves)
    # the value is the mean of -log softmax(logits)[y]
    logits = model(batch[0]).numpy()
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = -log_p[np.arange(6), batch[1].numpy()].mean()
    assert float(model.loss(batch).numpy()) == pytest.approx(want, rel=1e-12)


def test_random_shift_moves_each_image_by_its_own_offset():
    x = np.zeros((3, 28, 28))
    x[:, 10, 12] = 1.0
    shifted = mc._random_shift(td.tensor(x), 2, np.random.default_rng(0)).numpy().reshape(3, 28, 28)
    dy, dx = np.random.default_rng(0).integers(-2, 3, size=(3, 2)).T
    for i in range(3):
        assert shifted[i].sum() == 1 and shifted[i, 10 + dy[i], 12 + dx[i]] == 1


def test_a_short_training_run_learns_the_embedded_digits(tmp_path):
    train, test = load_embedded("train"), load_embedded("test")
    data = {"x_train": train["x"], "y_train": train["y"], "x_test": test["x"], "y_test": test["y"]}
    model = mc.train_mnist_classifier(data=data, epochs=4, hidden=32, batch_size=50, lr=3e-3, max_shift=0, seed=0,
                                      progress=False, out=tmp_path / "c.npz")
    assert model.metadata["test_accuracy"] > 0.8 and "1000 training images" in model.metadata["data"]
    assert model.metadata["test_accuracy"] == mc.classifier_accuracy(model, test["x"], test["y"])
    again = mc.train_mnist_classifier(data=data, epochs=4, hidden=32, batch_size=50, lr=3e-3, max_shift=0, seed=0,
                                      progress=False)
    np.testing.assert_array_equal(again.out.weight.numpy(), model.out.weight.numpy())    # seeded
    np.testing.assert_array_equal(mc.load_mnist_classifier(tmp_path / "c.npz").out.weight.numpy(),
                                  model.out.weight.numpy())


# ----------------------------------------------------------------------------- the metrics through it

def test_image_metrics_detect_a_collapsed_generator(classifier):
    """Always runs (embedded subset): real digits score an IS near 10; a "generator" that
    only makes ones scores IS near 1 and a Frechet distance to the data far above that of
    other real digits."""
    train, test = load_embedded("train"), load_embedded("test")
    ones = train["x"][train["y"] == 1]
    is_real = evaluate.mnist_inception_score(test["x"], classifier)
    is_ones = evaluate.mnist_inception_score(ones, classifier)
    assert is_real > 8.5 and is_ones < 1.5
    fid_real = evaluate.mnist_frechet_distance(test["x"], train["x"], classifier)
    fid_ones = evaluate.mnist_frechet_distance(ones, train["x"], classifier)
    noise = np.random.default_rng(0).random((500, 784))
    fid_noise = evaluate.mnist_frechet_distance(noise, train["x"], classifier)
    assert fid_real < fid_ones / 5 and fid_real < fid_noise / 5
    assert evaluate.mnist_frechet_distance(test["x"], test["x"], classifier) == pytest.approx(0, abs=1e-6)


@needs_mnist
def test_metrics_of_the_mnist_test_set_against_the_training_set(classifier, mnist):
    """The best achievable numbers (real test images against real training images), as the
    module documents them in REFERENCE; the IS cannot exceed exp(H(label frequencies))."""
    fid = evaluate.mnist_frechet_distance(mnist["x_test"], mnist["x_train"], classifier)
    is_test = evaluate.mnist_inception_score(mnist["x_test"], classifier)
    frequencies = np.bincount(mnist["y_test"]) / 10000
    assert 9 < is_test < np.exp(-(frequencies * np.log(frequencies)).sum())
    shuffled = np.random.default_rng(0).permuted(mnist["x_test"].reshape(10000, -1), axis=1)   # pixels scrambled
    fid_scrambled = evaluate.mnist_frechet_distance(shuffled, mnist["x_train"], classifier)
    assert fid < fid_scrambled / 50
    assert fid == pytest.approx(mc.REFERENCE["fid_test_vs_train"], abs=0.01)
    assert is_test == pytest.approx(mc.REFERENCE["is_test"], abs=0.01)
