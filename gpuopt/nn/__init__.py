"""Neural-network building blocks: activations with fused derivatives, their gains,
weight initializations (``gpuopt.nn.init``), and diagnostics of exploding and
vanishing signals (``gpuopt.nn.diagnostics``).

The arrays pick the backend, as everywhere in gpuopt: NumPy arrays run the NumPy
mirror, CuPy arrays the kernels of ``kernels/act_*.cu``.
"""

from . import init
from .activations import (
    ACTIVATIONS,
    ELU_ALPHA,
    LEAKY_RELU_SLOPE,
    activation,
    activation_with_derivative,
    gain,
    gaussian_quadrature,
)
from .diagnostics import gradient_norms, jacobian_singular_values, layer_statistics, unit_symmetry

__all__ = [
    "ACTIVATIONS", "ELU_ALPHA", "LEAKY_RELU_SLOPE", "activation", "activation_with_derivative",
    "gain", "gaussian_quadrature", "gradient_norms", "init", "jacobian_singular_values",
    "layer_statistics", "unit_symmetry",
]
