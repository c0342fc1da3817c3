"""Neural-network building blocks: activations with fused derivatives, their gains,
and weight initializations (``gpuopt.nn.init``).

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

__all__ = [
    "ACTIVATIONS", "ELU_ALPHA", "LEAKY_RELU_SLOPE", "activation", "activation_with_derivative",
    "gain", "gaussian_quadrature", "init",
]
