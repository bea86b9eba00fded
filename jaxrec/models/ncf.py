"""Neural collaborative filtering: GMF, MLP and NeuMF.

He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017.

  GMF:   y = h^T (p_u * q_i)
  MLP:   y = h^T tower([p_u, q_i])      (ReLU tower, widths halving)
  NeuMF: y = h^T [p_u^G * q_i^G, tower([p_u^M, q_i^M])]  (separate embeddings)

All return logits; the sigmoid lives in the loss.  Predictive factors F:
MLP with L layers has embeddings F * 2^(L-1) / 2 wide and a tower of widths
F * 2^(L-1), ..., F (F=8, L=3: embeddings 16, tower 32-16-8, as in §4.1).
Deviations: MLP-0 (no hidden layer) uses embeddings F wide so that its
output layer sees 2F inputs; initialisers are Flax's (normal(0.01) for
embeddings as in the paper, LeCun-normal for dense layers).

Legend: B = batch, N = candidates, F = predictive factors.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.models.layers import Tower, pair_grid

_EMBED_INIT = nn.initializers.normal(0.01)


def tower_widths(factors: int, layers: int) -> tuple[int, ...]:
  """(F * 2^(L-1), ..., F): the MLP tower of L layers ending in F."""
  return tuple(factors * 2 ** (layers - 1 - i) for i in range(layers))


def mlp_embed_dim(factors: int, layers: int) -> int:
  return factors * 2 ** (layers - 1) // 2 if layers else factors


class _PairModel(nn.Module):
  """Shared `score`: every NCF model scores (user, item) pairs."""

  def score(self, users: jnp.ndarray, candidates: jnp.ndarray) -> jnp.ndarray:
    """Logits (B, N) for users (B,) and candidates (N,) or (B, N)."""
    u, i = pair_grid(users, candidates)
    return self(u.reshape(-1), i.reshape(-1)).reshape(u.shape)


class GMF(_PairModel):
  n_users: int
  n_items: int
  factors: int = 8

  @nn.compact
  def __call__(self, users, items, train: bool = False):
    """Logits (B,) for users (B,), items (B,)."""
    p = nn.Embed(self.n_users + 1, self.factors, embedding_init=_EMBED_INIT,
                 name="user_embed")(users)
    q = nn.Embed(self.n_items + 1, self.factors, embedding_init=_EMBED_INIT,
                 name="item_embed")(items)
    return nn.Dense(1, name="out")(p * q)[:, 0]


class MLP(_PairModel):
  n_users: int
  n_items: int
  factors: int = 8
  layers: int = 3

  @nn.compact
  def __call__(self, users, items, train: bool = False):
    """Logits (B,) for users (B,), items (B,)."""
    dim = mlp_embed_dim(self.factors, self.layers)
    p = nn.Embed(self.n_users + 1, dim, embedding_init=_EMBED_INIT,
                 name="user_embed")(users)
    q = nn.Embed(self.n_items + 1, dim, embedding_init=_EMBED_INIT,
                 name="item_embed")(items)
    h = Tower(tower_widths(self.factors, self.layers), name="tower")(
        jnp.concatenate([p, q], axis=-1))
    return nn.Dense(1, name="out")(h)[:, 0]


class NeuMF(_PairModel):
  n_users: int
  n_items: int
  factors: int = 8
  layers: int = 3

  @nn.compact
  def __call__(self, users, items, train: bool = False):
    """Logits (B,) for users (B,), items (B,)."""
    f, dim = self.factors, mlp_embed_dim(self.factors, self.layers)
    embed = lambda n, d, name: nn.Embed(n + 1, d, embedding_init=_EMBED_INIT,
                                        name=name)
    gmf = (embed(self.n_users, f, "gmf_user_embed")(users) *
           embed(self.n_items, f, "gmf_item_embed")(items))
    mlp = Tower(tower_widths(f, self.layers), name="tower")(
        jnp.concatenate([embed(self.n_users, dim, "mlp_user_embed")(users),
                         embed(self.n_items, dim, "mlp_item_embed")(items)],
                        axis=-1))
    return nn.Dense(1, name="out")(jnp.concatenate([gmf, mlp], axis=-1))[:, 0]


def neumf_from_pretrained(gmf_params: dict, mlp_params: dict,
                          alpha: float = 0.5) -> dict:
  """NeuMF parameters from trained GMF and MLP ones (paper §3.4.1).

  Embeddings and the tower are copied; the output layer is the
  concatenation [alpha * h_GMF, (1 - alpha) * h_MLP], with the bias mixed
  the same way.
  """
  out = {
      "kernel": jnp.concatenate([alpha * gmf_params["out"]["kernel"],
                                 (1 - alpha) * mlp_params["out"]["kernel"]],
                                axis=0),
      "bias": (alpha * gmf_params["out"]["bias"] +
               (1 - alpha) * mlp_params["out"]["bias"])}
  return {"gmf_user_embed": gmf_params["user_embed"],
          "gmf_item_embed": gmf_params["item_embed"],
          "mlp_user_embed": mlp_params["user_embed"],
          "mlp_item_embed": mlp_params["item_embed"],
          "tower": mlp_params["tower"], "out": out}
