"""gpuopt: the optimization methods of deep learning at GPU and cluster scale.

``import gpuopt as go``; the arrays you hand in pick the backend (NumPy or CuPy).
"""

from . import backend, kernels
from .flat import FlatParams
from .minimize import OptimizeResult, minimize
from .optim import (
    OPTIMIZERS,
    SGD,
    AdaDelta,
    AdaGrad,
    Adam,
    AdamW,
    HeavyBall,
    Nesterov,
    Newton,
    Optimizer,
    RMSProp,
    get_optimizer,
)
from .store import load_results
from .study import Study, load_spec

__version__ = "0.1.0"

__all__ = [
    "OPTIMIZERS", "SGD", "AdaDelta", "AdaGrad", "Adam", "AdamW", "FlatParams", "HeavyBall",
    "Nesterov", "Newton", "OptimizeResult", "Optimizer", "RMSProp", "backend",
    "get_optimizer", "kernels", "minimize",
]
__all__ += ["Study", "load_results", "load_spec"]
