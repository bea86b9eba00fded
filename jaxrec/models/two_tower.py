"""Two-tower retrieval: a user tower and an item tower meeting in a cosine.

Covington, Adams & Sargin, "Deep Neural Networks for YouTube
Recommendations" (RecSys 2016) and Yi et al., "Sampling-Bias-Corrected
Neural Modeling for Large Corpus Item Recommendations" (RecSys 2019): each
tower embeds an id and its side features, runs an MLP and L2-normalises, so
that a user's score for an item is a cosine divided by a learned
temperature, and retrieval over all items is a maximum-inner-product
search (see `jaxrec.retrieval`).  The losses live in `jaxrec.losses`
(`sampled_softmax`, `triplet`) and `jaxrec.train.retrieval`.

Legend: B = batch, N = candidates, D = output dim, E = id embedding dim,
F = feature embedding dim, U = users, I = items, G = multi-hot width.

Deviations: no batch norm (the seed's towers have it; with L2-normalised
outputs and in-batch softmax it did not help here and it would make
`score` depend on batch statistics); categorical side features are
embedded field by field and concatenated with the id embedding.
"""

from __future__ import annotations

from typing import Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.models.layers import Tower


@flax.struct.dataclass
class Features:
  """Side-feature tables indexed by id; row 0 is padding.

  Attributes:
    user_codes: (U+1, Fu) int32, one categorical code per user field
      (0 = padding / unknown).
    item_codes: (I+1, Fi) int32, one categorical code per item field.
    item_multi: (I+1, G) float32 multi-hot (e.g. genres), each row divided
      by its count so that it pools to a mean.
  """

  user_codes: jax.Array
  item_codes: jax.Array
  item_multi: jax.Array

  @property
  def vocab(self) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(user field sizes, item field sizes, G): the model's static sizes."""
    size = lambda codes: tuple(int(v) + 1 for v in np.asarray(codes).max(0))
    return (size(self.user_codes), size(self.item_codes),
            int(self.item_multi.shape[1]))


def no_features(n_users: int, n_items: int) -> Features:
  """Ids only: empty feature tables."""
  return Features(np.zeros((n_users + 1, 0), np.int32),
                  np.zeros((n_items + 1, 0), np.int32),
                  np.zeros((n_items + 1, 0), np.float32))


class TwoTower(nn.Module):
  """User and item towers over ids and side features.

  Attributes:
    n_users, n_items: real ids are 1..n (tables have n + 1 rows).
    user_vocab: sizes of the user's categorical fields (`Features.vocab`).
    item_vocab: sizes of the item's categorical fields.
    n_multi: width G of the item multi-hot.
    dim: output embedding size D.
    id_dim: id embedding size E (0 = no id embedding: features only).
    feature_dim: embedding size F of each categorical field.
    hidden: MLP widths before the final projection; () = linear.
    init_temperature: tau at initialisation (the seed uses 0.07).
    learn_temperature: train tau (as log tau), floored at min_temperature.
    min_temperature: lower bound on tau.
    normalize: L2-normalise the tower outputs (cosine); False = plain dot
      product (as in the TFRS tutorials).
  """

  n_users: int
  n_items: int
  user_vocab: Sequence[int] = ()
  item_vocab: Sequence[int] = ()
  n_multi: int = 0
  dim: int = 64
  id_dim: int = 64
  feature_dim: int = 16
  hidden: Sequence[int] = (128,)
  init_temperature: float = 0.07
  learn_temperature: bool = True
  min_temperature: float = 0.01
  normalize: bool = True

  def setup(self):
    init = nn.initializers.normal(0.1)
    if self.id_dim:
      self.user_id = nn.Embed(self.n_users + 1, self.id_dim,
                              embedding_init=init)
      self.item_id = nn.Embed(self.n_items + 1, self.id_dim,
                              embedding_init=init)
    self.user_fields = [nn.Embed(v, self.feature_dim, embedding_init=init)
                        for v in self.user_vocab]
    self.item_fields = [nn.Embed(v, self.feature_dim, embedding_init=init)
                        for v in self.item_vocab]
    if self.n_multi:
      self.item_multi = nn.Dense(self.feature_dim, use_bias=False)
    self.user_mlp = Tower(tuple(self.hidden))
    self.item_mlp = Tower(tuple(self.hidden))
    self.user_out = nn.Dense(self.dim)
    self.item_out = nn.Dense(self.dim)
    log_tau = jnp.log(self.init_temperature)
    if self.learn_temperature:
      self.log_tau = self.param("log_temperature",
                                nn.initializers.constant(log_tau), ())
    else:
      self.log_tau = log_tau

  def temperature(self) -> jax.Array:
    """Scalar tau >= min_temperature."""
    return jnp.maximum(jnp.exp(self.log_tau), self.min_temperature)

  def user_tower(self, users: jax.Array, features: Features) -> jax.Array:
    """(..., D) vectors (unit unless normalize=False) for user ids (...)."""
    codes = features.user_codes[users]                   # (..., Fu)
    parts = [f(codes[..., k]) for k, f in enumerate(self.user_fields)]
    if self.id_dim:
      parts.insert(0, self.user_id(users))
    return self._finish(self.user_out(self.user_mlp(_concat(parts))))

  def item_tower(self, items: jax.Array, features: Features) -> jax.Array:
    """(..., D) vectors (unit unless normalize=False) for item ids (...)."""
    codes = features.item_codes[items]                   # (..., Fi)
    parts = [f(codes[..., k]) for k, f in enumerate(self.item_fields)]
    if self.n_multi:
      parts.append(self.item_multi(features.item_multi[items]))
    if self.id_dim:
      parts.insert(0, self.item_id(items))
    return self._finish(self.item_out(self.item_mlp(_concat(parts))))

  def _finish(self, x: jax.Array) -> jax.Array:
    return _normalize(x) if self.normalize else x

  def __call__(self, users: jax.Array, items: jax.Array,
               features: Features) -> jax.Array:
    """Logits (B,) of pairs users (B,), items (B,)."""
    return self.score(users, items[:, None], features)[:, 0]

  def score(self, users: jax.Array, candidates: jax.Array,
            features: Features) -> jax.Array:
    """Logits u.v / tau (B, N), users (B,), candidates (N,) or (B, N)."""
    u = self.user_tower(users, features)                 # (B, D)
    v = self.item_tower(candidates, features)            # (N, D) / (B, N, D)
    if candidates.ndim == 1:
      cos = u @ v.T
    else:
      cos = jnp.einsum("bd,bnd->bn", u, v)
    return cos / self.temperature()

  def embeddings(self, users: jax.Array, items: jax.Array,
                 features: Features) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(user vectors (B, D), item vectors (N, D), tau) for the losses."""
    return (self.user_tower(users, features),
            self.item_tower(items, features), self.temperature())


def _concat(parts: list[jax.Array]) -> jax.Array:
  if not parts:
    raise ValueError("a tower needs an id embedding or at least one feature")
  return jnp.concatenate(parts, axis=-1)


def _normalize(x: jax.Array) -> jax.Array:
  # The epsilon keeps the gradient finite at x = 0.
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def movielens_features(users, items) -> Features:
  """Features of `jaxrec.data.movielens` tables (items already aligned).

  User fields: gender, age, occupation, zip code's first three characters
  (unseen prefixes share code 0). Item fields: release decade; multi-hot:
  genres.
  """
  user_codes = np.stack([users.gender, _codes(users.age),
                         users.occupation,
                         _codes(np.char.ljust(
                             np.asarray(users.zip_code, str), 3).astype(
                                 "<U3"), empty="   ")], axis=1)
  decade = np.where(items.year > 0, items.year // 10, 0)
  genres = items.genres.astype(np.float32)
  genres /= np.maximum(genres.sum(1, keepdims=True), 1.0)
  return Features(user_codes.astype(np.int32),
                  _codes(decade)[:, None].astype(np.int32), genres)


def _codes(values: np.ndarray, empty=0) -> np.ndarray:
  """Dense codes 1..V for the distinct values; `empty` (padding) -> 0."""
  uniq, inv = np.unique(values, return_inverse=True)
  codes = inv.reshape(values.shape) + 1
  codes[values == empty] = 0
  return codes.astype(np.int32)
