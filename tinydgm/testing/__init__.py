"""Public test contracts: check any implementation (tinydgm's, or another framework's
through tinydgm.interop) against exact answers.

    dependencies.py   the autoregressive property: from the engine's Jacobian, or exactly
                      from the masks of a masked network (every violation listed)
    discrete.py       normalisation over all 2^D binary states, chi-square tests of samplers
                      against exact distributions
    flow_contract.py  the flow-transform contract: inverse, log-det against a brute-force
                      Jacobian, inverse log-det, gradients
    compare.py        two implementations side by side: values, gradients, a Hessian-vector
                      product, per output and per input
    parameters.py     swap a module's parameters for checked inputs
    arrays.py         the host arrays the checks work on (Tensors, arrays, torch tensors)

The project's own tests use these same functions (tests/contracts.py re-exports them).
"""
from tinydgm.testing.compare import Comparison, compare
from tinydgm.testing.dependencies import (AutoregressiveError, AutoregressiveReport, assert_autoregressive,
                                          assert_autoregressive_masks, check_autoregressive, dependency_matrix,
                                          mask_path_dependencies)
from tinydgm.testing.discrete import all_binary, assert_normalised, chi_square_pvalue, chi_square_sf
from tinydgm.testing.flow_contract import FlowContractError, assert_flow_transform, density_on_grid_2d
from tinydgm.testing.parameters import swap_parameters, swapped_weights, with_params

__all__ = [
    "compare", "Comparison",
    "dependency_matrix", "mask_path_dependencies", "check_autoregressive", "assert_autoregressive",
    "assert_autoregressive_masks", "AutoregressiveError", "AutoregressiveReport",
    "all_binary", "assert_normalised", "chi_square_pvalue", "chi_square_sf",
    "assert_flow_transform", "density_on_grid_2d", "FlowContractError",
    "with_params", "swap_parameters", "swapped_weights",
]
