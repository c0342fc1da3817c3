"""Network diagnostics: statistics, gradient norms, Jacobian spectra and unit
symmetry against plain per-run computations, finite differences and closed forms."""

import numpy as np
import pytest

import gpuopt as go
from gpuopt import problems as P
from gpuopt.nn import activation
from gpuopt.nn.diagnostics import (
    gradient_norms,
    jacobian_singular_values,
    layer_statistics,
    unit_symmetry,
)

rng0 = np.random.default_rng(0)
X, Y = P.teacher_student([5, 8, 2], "tanh", 30, seed=0)


def plain_forward(mlp, theta, inputs):
    """Pre- and post-activations of one run, layer by layer, without the library's MLP."""
    pre, post, a, o = [], [], inputs, 0
    widths = mlp.widths
    for l, (i, j) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        W = theta[o:o + i * j].reshape(i, j)
        o += i * j
        b = theta[o:o + j]
        o += j
        z = a @ W + b
        a = z if l == len(widths) - 2 else activation(mlp.activation, z)
        pre.append(z)
        post.append(a)
    return pre, post


@pytest.fixture
def mlp():
    return P.MLP(X, Y, [5, 7, 6, 2], activation="tanh")


def params(mlp, runs=3):
    return mlp.init_params(range(runs), scheme="xavier_normal") + 0.1 * rng0.standard_normal((runs, mlp.dim))


def test_layer_statistics_match_plain_forward(mlp):
    x = params(mlp)
    stats = layer_statistics(mlp, x)
    assert set(stats) == {"pre_mean", "pre_var", "post_mean", "post_var"}
    for r in range(3):
        pre, post = plain_forward(mlp, x[r], X)
        for l in range(3):
            assert stats["pre_mean"][r, l] == pytest.approx(pre[l].mean(), rel=1e-12, abs=1e-15)
            assert stats["pre_var"][r, l] == pytest.approx(pre[l].var(), rel=1e-12)
            assert stats["post_mean"][r, l] == pytest.approx(post[l].mean(), rel=1e-12, abs=1e-15)
            assert stats["post_var"][r, l] == pytest.approx(post[l].var(), rel=1e-12)
    inputs = rng0.standard_normal((4, 5))
    other = layer_statistics(mlp, x, inputs)
    assert other["post_var"][1, 0] == pytest.approx(plain_forward(mlp, x[1], inputs)[1][0].var(), rel=1e-12)


def test_gradient_norms_are_the_weight_gradient_norms(mlp):
    x = params(mlp)
    norms = gradient_norms(mlp, x)
    assert norms.shape == (3, 3)
    g = mlp.grad(x)
    for l, (gw, _) in enumerate(mlp.unpack(g)):
        np.testing.assert_allclose(norms[:, l], np.linalg.norm(gw.reshape(3, -1), axis=1), rtol=1e-13)


def test_vanishing_and_exploding_gradients_show():
    Xd, yd = P.teacher_student([16, 32, 1], "tanh", 64, seed=0)
    widths = [16] + [32] * 10 + [1]
    # sigmoid: phi' <= 1/4 shrinks the backward signal layer after layer (Glorot & Bengio 2010)
    sig = P.MLP(Xd, yd, widths, activation="sigmoid")
    gn = gradient_norms(sig, sig.init_params(range(4), scheme="lecun_normal"))
    assert np.all(gn[:, 0] < 1e-2 * gn[:, -2])
    # tanh with large weights: the chaotic phase, gradients grow towards the input
    big = P.MLP(Xd, yd, widths, activation="tanh")
    gn = gradient_norms(big, big.init_params(range(4), scheme="lecun_normal", scale=3.0))
    assert np.all(gn[:, 0] > 3 * gn[:, -2])
    # tanh with small weights: the forward signal dies out geometrically
    stats = layer_statistics(big, big.init_params(range(4), scheme="lecun_normal", scale=0.5))
    assert np.all(stats["post_var"][:, 5] < 1e-2 * stats["post_var"][:, 0])


def test_linear_orthogonal_network_scales_signals_exactly():
    # identity activation, square orthogonal layers times s: every sample's norm is
    # multiplied by s per layer, and the Jacobian's singular values are all s^L.
    s, width = 1.3, 6
    Xs = rng0.standard_normal((10, width))
    lin = P.MLP(Xs, rng0.standard_normal((10, width)), [width] * 5, activation="identity")
    x = lin.init_params([0, 1], scheme="orthogonal", scale=s)
    stats = layer_statistics(lin, x)
    second_moment = stats["pre_var"] + stats["pre_mean"] ** 2
    np.testing.assert_allclose(second_moment[:, 1:] / second_moment[:, :-1], s**2, rtol=1e-12)
    sv = jacobian_singular_values(lin, x, Xs[:3])
    assert sv.shape == (2, 3, width)
    np.testing.assert_allclose(sv, s**4, rtol=1e-12)


def test_jacobian_singular_values_match_finite_differences(mlp):
    x = params(mlp)
    inputs = rng0.standard_normal((4, 5))
    sv = jacobian_singular_values(mlp, x, inputs)
    assert sv.shape == (3, 4, 2)
    h = 1e-6
    for r in range(3):
        for i in range(4):
            jac = np.empty((2, 5))
            for k in range(5):
                e = np.zeros(5)
                e[k] = h
                up = plain_forward(mlp, x[r], (inputs[i] + e)[None])[1][-1][0]
                down = plain_forward(mlp, x[r], (inputs[i] - e)[None])[1][-1][0]
                jac[:, k] = (up - down) / (2 * h)
            np.testing.assert_allclose(sv[r, i], np.linalg.svd(jac, compute_uv=False), rtol=1e-7)
    # layer=1: the Jacobian of z_1 is W_1^T, the same for every input
    first = jacobian_singular_values(mlp, x, inputs, layer=1)
    w1 = mlp.unpack(x)[0][0]
    np.testing.assert_allclose(first[:, 2], np.linalg.svd(w1, compute_uv=False), rtol=1e-12)


@pytest.mark.parametrize("activation_name,scheme,scale", [
    ("sigmoid", "zeros", 1.0),
    ("tanh", "constant", 0.3),
    ("relu", "constant", 0.2),
])
def test_symmetric_initialization_never_breaks(activation_name, scheme, scale):
    Xs, ys = P.teacher_student([5, 8, 1], "tanh", 40, seed=0)
    m = P.MLP(Xs, ys, [5, 16, 12, 1], activation=activation_name)
    x = m.init_params(range(3), scheme=scheme, scale=scale)
    x0, f0 = x.copy(), m.value(x)
    opt = go.SGD(lr=np.array([[0.02], [0.05], [0.1]]), momentum=0.5, batched=True)
    state = opt.init(x)
    for _ in range(100):
        opt.step(x, m.grad(x), state)
    assert np.all(m.value(x) < f0) and np.abs(x - x0).max() > 0.01  # it trained...
    spread = unit_symmetry(m, x)
    assert spread.shape == (3, 2)
    # ...and the hidden units stayed identical, to rounding
    assert np.all(spread <= 1e-12 * np.abs(x).max(axis=1, keepdims=True))
    # a random initialization gives distinct units, and training keeps them distinct
    x = m.init_params(range(3), scheme="he_normal")
    assert np.all(unit_symmetry(m, x) > 0.1)


def test_unit_symmetry_counts_every_weight_of_a_unit():
    m = P.MLP(X, Y, [5, 4, 2])
    x = np.zeros(m.dim)
    (w1, b1), (w2, b2) = m.unpack(x)
    assert unit_symmetry(m, x).tolist() == [0.0]
    for view, where in ((w1, (2, 3)), (b1, (1,)), (w2, (3, 1))):
        x[:] = 0
        view[where] = 0.25
        assert unit_symmetry(m, x).tolist() == [0.25]
    x[:] = 0
    b2[1] = 5.0  # output units are not hidden units
    assert unit_symmetry(m, x).tolist() == [0.0]
    assert unit_symmetry(P.MLP(X, Y, [5, 2]), np.zeros(12)).shape == (0,)


def test_batched_equals_per_run(mlp):
    x = params(mlp, runs=4)
    inputs = rng0.standard_normal((3, 5))
    stats = layer_statistics(mlp, x)
    norms, sv, sym = gradient_norms(mlp, x), jacobian_singular_values(mlp, x, inputs), unit_symmetry(mlp, x)
    for r in range(4):
        one = layer_statistics(mlp, x[r])
        for k in stats:
            assert one[k].shape == (3,)
            np.testing.assert_allclose(one[k], stats[k][r], rtol=1e-12)
        np.testing.assert_allclose(gradient_norms(mlp, x[r]), norms[r], rtol=1e-12)
        np.testing.assert_allclose(jacobian_singular_values(mlp, x[r], inputs), sv[r], rtol=1e-10)
        np.testing.assert_array_equal(unit_symmetry(mlp, x[r]), sym[r])


def test_float32_in_float32_out(mlp):
    x = params(mlp).astype(np.float32)
    inputs = rng0.standard_normal((2, 5)).astype(np.float32)
    outs = list(layer_statistics(mlp, x).values()) + [
        gradient_norms(mlp, x), jacobian_singular_values(mlp, x, inputs), unit_symmetry(mlp, x)]
    assert all(o.dtype == np.float32 for o in outs)


def test_bad_arguments(mlp):
    x = params(mlp)
    with pytest.raises(ValueError, match="^layer must be"):
        jacobian_singular_values(mlp, x, X[:2], layer=0)
    with pytest.raises(ValueError, match="^layer must be"):
        jacobian_singular_values(mlp, x, X[:2], layer=4)
    with pytest.raises(ValueError, match="^inputs has shape"):
        jacobian_singular_values(mlp, x, X[:2, :3])
    with pytest.raises(ValueError, match="^x has shape"):
        unit_symmetry(mlp, x[:, :-1])
    with pytest.raises(ValueError, match="^x has shape"):
        gradient_norms(mlp, np.zeros(3))
