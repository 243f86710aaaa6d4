"""The flow-transform contract, re-exported from tinydgm.testing (one copy: the project's
tests use the public version)."""
from tinydgm.testing import assert_flow_transform, density_on_grid_2d, swap_parameters  # noqa: F401

__all__ = ["assert_flow_transform", "density_on_grid_2d", "swap_parameters"]
