"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018).

Legend: B = batch rows (sessions in flight), C = output columns, H = hidden
size of a layer, I = n_items + 1 (id 0 is padding).

One step reads the current item of each row and the rows' hidden states,
runs the stacked GRU layers and scores the output columns:
`logits = h W[c]^T + b[c]`.  The input is, as in the official PyTorch
implementation (hidasib/GRU4Rec_PyTorch_Official):
  * constrained (default): the output weights W themselves (tied input and
    output embeddings, dimension = the last layer's size);
  * `embedding > 0`: a separate embedding table;
  * otherwise one-hot, i.e. the first layer's input weights are a table of
    3H gate pre-activations looked up by item (no one-hot matmul).

Training and evaluation run the recurrence over time with `lax.scan`
(jaxrec.train.session); this module is one step.

Deviations from the official code: none in the forward pass (dropout on
the input embedding and after every layer, and, as there, the dropped-out
output is also the state carried to the next step).  Initialisation follows
its scheme (uniform, Glorot-style per gate; zero biases) but not its
compatibility-mode numpy random stream.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.models.dropout import Dropout

Hidden = tuple[jax.Array, ...]  # one (B, H_l) array per layer


def _uniform(limit_fn):
  def init(key, shape, dtype=jnp.float32):
    limit = limit_fn(shape)
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


# Per-gate Glorot: a (fan_in, 3H) matrix is three (fan_in, H) matrices.
_gate_init = _uniform(lambda s: math.sqrt(6.0 / (s[0] + s[1] / 3)))
_glorot = _uniform(lambda s: math.sqrt(6.0 / (s[0] + s[1])))


def gru_update(x_gates: jax.Array, h_gates: jax.Array,
               h: jax.Array) -> jax.Array:
  """The GRU cell from gate pre-activations (PyTorch's GRUCell formula).

  Args:
    x_gates: (B, 3H) input contribution [reset, update, candidate].
    h_gates: (B, 3H) hidden contribution, same layout.
    h: (B, H) previous state.

  Returns:
    (B, H) new state (1 - z) * n + z * h, n = tanh(x_n + r * h_n).
  """
  xr, xz, xn = jnp.split(x_gates, 3, axis=-1)
  hr, hz, hn = jnp.split(h_gates, 3, axis=-1)
  r = jax.nn.sigmoid(xr + hr)
  z = jax.nn.sigmoid(xz + hz)
  n = jnp.tanh(xn + r * hn)
  return (1.0 - z) * n + z * h


def zero_hidden(layers: Sequence[int], batch: int) -> Hidden:
  """The initial (all-zero) state: one (B, H_l) array per layer."""
  return tuple(jnp.zeros((batch, h), jnp.float32) for h in layers)


def reset_hidden(hidden: Hidden, reset: jax.Array) -> Hidden:
  """Zeroes the rows where reset (B,) is True (a new session starts)."""
  return tuple(jnp.where(reset[:, None], 0.0, h) for h in hidden)


class GRU4Rec(nn.Module):
  """Stacked GRU over items with a (sampled) output layer.

  Attributes:
    n_items: items are 1..n_items.
    layers: hidden size of each GRU layer.
    embedding: size of a separate input embedding (0 = none).
    constrained: tie the input embedding to the output weights.
    dropout_embed: dropout on the input embedding (training only).
    dropout_hidden: dropout after each GRU layer (training only).
  """

  n_items: int
  layers: Sequence[int] = (100,)
  embedding: int = 0
  constrained: bool = True
  dropout_embed: float = 0.0
  dropout_hidden: float = 0.0

  def setup(self):
    n, last = self.n_items + 1, self.layers[-1]
    self.out_w = self.param("out_w", _glorot, (n, last))
    self.out_b = self.param("out_b", nn.initializers.zeros, (n,))
    self.one_hot = not self.constrained and not self.embedding
    if self.embedding and not self.constrained:
      self.embed = self.param("embed", _glorot, (n, self.embedding))
    if self.one_hot:
      self.onehot_gates = self.param("onehot_gates", _gate_init,
                                     (n, 3 * self.layers[0]))
    self.x_proj = [nn.Dense(3 * h, kernel_init=_gate_init,
                            name=f"x_proj_{i}")
                   for i, h in enumerate(self.layers)
                   if not (i == 0 and self.one_hot)]
    self.h_proj = [nn.Dense(3 * h, kernel_init=_gate_init,
                            name=f"h_proj_{i}")
                   for i, h in enumerate(self.layers)]
    self.drop_embed = Dropout(self.dropout_embed)
    self.drop_hidden = Dropout(self.dropout_hidden)

  def step(self, hidden: Hidden, inputs: jax.Array,
           deterministic: bool = True) -> tuple[Hidden, jax.Array]:
    """One time step.  inputs (B,) item ids -> (new hidden, (B, H) output)."""
    new = []
    for i, h in enumerate(hidden):
      if i == 0 and self.one_hot:
        gates = self.drop_embed(self.onehot_gates[inputs], deterministic)
      else:
        if i == 0:
          table = self.out_w if self.constrained else self.embed
          x = self.drop_embed(table[inputs], deterministic)
        gates = self.x_proj[i - int(self.one_hot)](x)
      x = gru_update(gates, self.h_proj[i](h), h)
      x = self.drop_hidden(x, deterministic)
      new.append(x)
    return tuple(new), x

  def logits(self, out: jax.Array, candidates: jax.Array) -> jax.Array:
    """(B, H) outputs against candidates (C,) -> (B, C) scores."""
    return out @ self.out_w[candidates].T + self.out_b[candidates][None, :]

  def score(self, out: jax.Array, candidates: jax.Array) -> jax.Array:
    """(C, H) outputs against candidates (N,) shared or (C, N) per row ->
    (C, N) scores (the `score` protocol of jaxrec.evaluate)."""
    if candidates.ndim == 1:
      return self.logits(out, candidates)
    w = self.out_w[candidates]  # (C, N, H)
    return jnp.einsum("ch,cnh->cn", out, w) + self.out_b[candidates]

  def __call__(self, hidden: Hidden, inputs: jax.Array,
               candidates: jax.Array, deterministic: bool = True
               ) -> tuple[Hidden, jax.Array]:
    """One step, then scores: (new hidden, (B, C) logits)."""
    hidden, out = self.step(hidden, inputs, deterministic)
    return hidden, self.logits(out, candidates)
