"""The shared test contracts, re-exported from tinydgm.testing (one copy: the project's
tests use the public versions)."""
from tinydgm.testing import (all_binary, assert_autoregressive, assert_autoregressive_masks,  # noqa: F401
                             assert_normalised, check_autoregressive, chi_square_pvalue, dependency_matrix,
                             mask_path_dependencies, with_params)
