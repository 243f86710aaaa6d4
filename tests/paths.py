"""Where the tests find the repository and the optional MNIST files (nothing outside the
repository is required: tests that need MNIST skip, with the reason, when it is absent)."""
import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# TINYDGM_DATA wins; else a data folder beside the checkout (as in the development workplace).
DATA_DIR = pathlib.Path(os.environ.get("TINYDGM_DATA") or REPO_ROOT.parent / "shared" / "data")
