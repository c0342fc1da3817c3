"""Shared test tables.

``ELEMENTWISE_CASES`` is the table every optimizer test iterates over: each
elementwise optimizer with settings that switch on each of its kernel flags. A new
optimizer added to ``gpuopt.OPTIMIZERS`` must get rows here (a test checks this) and
then gets every test for free.
"""

import pytest

import gpuopt as go

# (id, optimizer name, keyword arguments)
ELEMENTWISE_CASES = [
    ("sgd", "sgd", dict(lr=0.1)),
    ("sgd-wd-maximize", "sgd", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("sgd-momentum", "sgd", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd-nesterov", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("heavy_ball", "heavy_ball", dict(lr=0.05, beta=0.9)),
    ("nesterov", "nesterov", dict(lr=0.05, beta=0.9)),
    ("adagrad", "adagrad", dict(lr=0.1)),
    ("adagrad-wd-decay", "adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1,
                                         initial_accumulator_value=0.1)),
    ("rmsprop", "rmsprop", dict(lr=0.01)),
    ("rmsprop-centered-momentum-wd", "rmsprop", dict(lr=0.01, centered=True, momentum=0.5,
                                                     weight_decay=0.1)),
    ("adadelta", "adadelta", dict()),
    ("adadelta-wd", "adadelta", dict(lr=0.5, rho=0.95, weight_decay=0.1)),
    ("adam", "adam", dict(lr=0.01)),
    ("adam-amsgrad-wd", "adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("adam-no-bias-correction", "adam", dict(lr=0.01, bias_correction=False)),
    ("adamw", "adamw", dict(lr=0.01, weight_decay=0.1)),
    ("adamw-amsgrad", "adamw", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]


def make_optimizer(case, **extra):
    """Build the optimizer of a table row, with extra keyword arguments."""
    _, name, kwargs = case
    return go.get_optimizer(name)(**{**kwargs, **extra})


@pytest.fixture(params=ELEMENTWISE_CASES, ids=[c[0] for c in ELEMENTWISE_CASES])
def case(request):
    """One row of ELEMENTWISE_CASES."""
    return request.param


# A small study for the engine, store, cluster and CLI tests: 80 runs of 600 steps of
# 2-D Rosenbrock (chunks of 4 take roughly 0.1 s each). ``{name}`` is the study name.
ROSENBROCK_STUDY = """\
[study]
name = "{name}"
steps = 600
seeds = 4
record_every = 100

[problem]
kind = "rosenbrock"

[init]
scale = {{ values = [0.1, 0.5] }}

[[optimizers]]
name = "adam"
lr = {{ logspace = [-3, -1, 5] }}

[[optimizers]]
name = "sgd"
lr = {{ logspace = [-4, -2.5, 5] }}
momentum = 0.9
"""
