r"""Diagnostics of signal propagation in an MLP, batched over runs.

For a :class:`gpuopt.problems.MLP` and parameters ``x`` of shape ``(R, dim)`` (or
``(dim,)``, which drops the run axis from every result), these measure where a deep
network's forward signal and gradients explode or vanish, and whether its hidden
units are still distinct:

- :func:`layer_statistics`: per-layer mean and variance of the pre-activations
  :math:`z_l` and post-activations :math:`a_l`, shape ``(R, L)`` each. In a network
  at the edge of chaos the variance stays put from layer to layer; it grows
  geometrically (ordered phase, large weights in a linear net) or shrinks to zero
  (small weights) otherwise (Poole et al. 2016; Schoenholz et al. 2017).
- :func:`gradient_norms`: per-layer Frobenius norms of the loss gradient with
  respect to each weight matrix, ``(R, L)``: exploding gradients grow towards the
  input layer, vanishing ones shrink (Bengio, Simard & Frasconi 1994; Glorot &
  Bengio 2010, sec. 4.2).
- :func:`jacobian_singular_values`: singular values of the input-output Jacobian
  :math:`\partial f(u)/\partial u` per run and per input sample. Their spread is the
  conditioning of the backward signal; all equal to one is dynamical isometry
  (Saxe et al. 2014; Pennington, Schoenholz & Ganguli 2017).
- :func:`unit_symmetry`: the largest difference between the weights of two units of
  each hidden layer, ``(R, L - 1)``. With a symmetric initialization (``zeros``,
  ``constant``) every hidden unit of a layer computes the same function and receives
  the same gradient, so gradient-based training keeps them identical forever and the
  layer acts as a single unit: this stays exactly 0 (up to rounding) however long one
  trains, while any random initialization gives a positive value.

Every function returns arrays of ``x``'s backend (NumPy or CuPy) and dtype.
"""

from __future__ import annotations

from .activations import activation_with_derivative


def _drop(a, single, dtype):
    """Without the run axis for a single run; in the storage dtype."""
    a = a[0] if single else a
    return a if a.dtype == dtype else a.astype(dtype)


def layer_statistics(mlp, x, inputs=None) -> dict:
    r"""Mean and variance of every layer's pre- and post-activations.

    Returns a dict with ``"pre_mean"``, ``"pre_var"``, ``"post_mean"``,
    ``"post_var"``, each of shape ``(R, L)`` (``L`` = number of layers, the output
    layer included, whose post-activation is the network output itself): for run
    :math:`r` and layer :math:`l`, the mean over the ``m`` input samples and the
    :math:`n_l` units of :math:`z_l` (resp. :math:`a_l`) and the (population) variance
    over the same :math:`m n_l` numbers. ``inputs`` ``(m, n_0)`` defaults to the
    training inputs ``mlp.X``.
    """
    xp, x2, single, dt = mlp._batch(x)
    pre, post = mlp.forward(x2, inputs)
    out = {}
    for name, arrays in (("pre", pre), ("post", post)):
        out[f"{name}_mean"] = xp.stack([a.mean(axis=(-2, -1)) for a in arrays], axis=-1)
        out[f"{name}_var"] = xp.stack([a.var(axis=(-2, -1)) for a in arrays], axis=-1)
    return {k: _drop(v, single, dt) for k, v in out.items()}


def gradient_norms(mlp, x):
    r"""Frobenius norms :math:`\lVert \partial \ell / \partial W_l \rVert_F` of the
    training loss's gradient per weight matrix: ``(R, L)``, column ``l`` for layer
    ``l + 1`` (input layer first). Biases are left out: their gradients are the
    column sums of :math:`\delta_l` and track the weights'. One forward and one
    backward pass (``mlp.value_and_grad``)."""
    xp, x2, single, dt = mlp._batch(x)
    _, g = mlp.value_and_grad(x2)
    norms = xp.stack([xp.sqrt((w * w).sum(axis=(-2, -1))) for w, _ in mlp.unpack(g)], axis=-1)
    return _drop(norms, single, dt)


def jacobian_singular_values(mlp, x, inputs, layer=None):
    r"""Singular values of the Jacobian of the network output with respect to its
    input, per run and per input sample.

    For input :math:`u` (a row of ``inputs``, shape ``(m, n_0)``) the Jacobian of
    :math:`z_l` is built forward, :math:`J_1 = W_1^\top`,
    :math:`J_l = W_l^\top\,\mathrm{diag}(\phi'(z_{l-1}))\,J_{l-1}`, up to the output
    layer (``layer=None``) or up to the pre-activations of layer ``layer`` (1-based,
    useful when the output is a single unit). Returns ``(R, m, min(n_l, n_0))``
    singular values in descending order (``(m, ...)`` for ``x`` of shape ``(dim,)``).
    The cost is :math:`O(R\,m\,\sum_l n_l n_{l-1} n_0)`, so pass a modest ``m``.
    """
    L = len(mlp.layout)
    if layer is None:
        layer = L
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= L:
        raise ValueError(f"layer must be an int in 1..{L} or None, got {layer!r}")
    xp, x2, single, dt = mlp._batch(x)
    pre, _ = mlp.forward(x2, inputs)
    params = mlp.unpack(x2)
    jac = None
    for l in range(layer):
        wt = params[l][0].swapaxes(-1, -2)  # (R, n_l, n_{l-1})
        if l == 0:
            m = pre[0].shape[1]
            jac = xp.broadcast_to(wt[:, None], (wt.shape[0], m) + wt.shape[1:])
        else:
            _, d = activation_with_derivative(mlp.activation, pre[l - 1])
            jac = wt[:, None] @ (d[..., None] * jac)  # (R, m, n_l, n_0)
    s = xp.linalg.svd(jac, compute_uv=False)
    return _drop(s, single, dt)


def unit_symmetry(mlp, x):
    r"""How different the hidden units of each layer are: ``(R, L - 1)``.

    For hidden layer :math:`l` with units :math:`j`, a unit is its incoming weights
    :math:`W_l[:, j]`, its bias :math:`b_l[j]` and its outgoing weights
    :math:`W_{l+1}[j, :]`; the value is the largest spread (max minus min over the
    units) of any of these coordinates. Two units with equal incoming weights and
    bias compute the same activation; with equal outgoing weights too they also get
    the same gradient, so the value is 0 exactly when gradient training can never
    tell the units apart. A network with no hidden layer gives shape ``(R, 0)``.
    """
    xp, x2, single, dt = mlp._batch(x)
    params = mlp.unpack(x2)
    spreads = []
    for l in range(len(params) - 1):
        w_in, b = params[l]
        w_out = params[l + 1][0]
        s = w_in.max(axis=-1) - w_in.min(axis=-1)  # per incoming coordinate, over units
        parts = [s.max(axis=-1), (w_out.max(axis=-2) - w_out.min(axis=-2)).max(axis=-1)]
        if b is not None:
            parts.append(b.max(axis=-1) - b.min(axis=-1))
        spreads.append(xp.stack(parts, axis=-1).max(axis=-1))
    out = xp.stack(spreads, axis=-1) if spreads else xp.zeros((x2.shape[0], 0), x2.dtype)
    return _drop(out, single, dt)
