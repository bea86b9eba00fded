"""Synthetic implicit feedback with a planted low-rank preference signal.

Legend: U = n_users, I = n_items, D = dim, K = per_user.

Each user picks K distinct items from a Plackett-Luce model with logits
`signal * <u, v> / sqrt(D) + popularity * bias`, sampled exactly by adding
Gumbel noise and keeping the top K. The bias is Zipf-like (log 1/rank), so a
popularity baseline is meaningful, while the factor term rewards models that
learn per-user taste.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxrec.data.interactions import Interactions


@dataclasses.dataclass(frozen=True)
class PlantedModel:
  """The ground truth behind `planted`; row 0 of every table is padding.

  Attributes:
    user_factors: (U+1, D) float64, standard normal, row 0 zero.
    item_factors: (I+1, D) float64, standard normal, row 0 zero.
    item_bias: (I+1,) float64 centred -log(popularity rank), row 0 zero.
    signal: scale of the factor term (its standard deviation).
    popularity: weight of the item bias.
  """

  user_factors: np.ndarray
  item_factors: np.ndarray
  item_bias: np.ndarray
  signal: float
  popularity: float

  def affinity(self) -> np.ndarray:
    """(U+1, I+1) float64 personal part of the logits, 0 at padding."""
    dim = self.user_factors.shape[1]
    return (self.signal / np.sqrt(dim)) * (
        self.user_factors @ self.item_factors.T)

  def logits(self) -> np.ndarray:
    """(U+1, I+1) float64 affinity plus weighted item bias."""
    return self.affinity() + self.popularity * self.item_bias[None, :]


def planted_model(n_users: int = 300, n_items: int = 200, dim: int = 8,
                  seed: int = 0, popularity: float = 1.0,
                  signal: float = 2.0) -> PlantedModel:
  """Draws the factors and item bias that `planted(seed=seed)` uses."""
  if min(n_users, n_items, dim) < 1:
    raise ValueError(f"n_users={n_users}, n_items={n_items}, dim={dim} must "
                     "all be >= 1")
  rng = _streams(seed)[0]
  pad = lambda a: np.concatenate([np.zeros((1,) + a.shape[1:]), a])
  rank = rng.permutation(n_items) + 1
  bias = -np.log(rank)
  return PlantedModel(
      user_factors=pad(rng.standard_normal((n_users, dim))),
      item_factors=pad(rng.standard_normal((n_items, dim))),
      item_bias=pad(bias - bias.mean()), signal=float(signal),
      popularity=float(popularity))


def planted(n_users: int = 300, n_items: int = 200, dim: int = 8,
            per_user: int = 20, seed: int = 0, popularity: float = 1.0,
            noise: float = 1.0, signal: float = 2.0) -> Interactions:
  """Implicit feedback: `per_user` distinct items for every user.

  Args:
    n_users: U; every user gets exactly `per_user` interactions.
    n_items: I.
    dim: D, rank of the planted preference.
    per_user: K <= I items drawn per user without replacement.
    seed: the output is a pure function of all arguments.
    popularity: weight of the Zipf-like item bias; 0 gives uniform appeal.
    noise: Gumbel scale; 1 samples the softmax exactly, 0 takes each user's
      top K, larger values wash the signal out.
    signal: standard deviation of the factor term.

  Returns:
    Interactions sorted by user then time, ratings all 1 and int64
    timestamps that are a random permutation of 0..U*K-1, so each user's
    order is random and there are no ties.
  """
  if not 1 <= per_user <= n_items:
    raise ValueError(f"per_user={per_user} must be in [1, n_items={n_items}]")
  if noise < 0:
    raise ValueError(f"noise={noise} must be >= 0")
  model = planted_model(n_users, n_items, dim, seed, popularity, signal)
  rng = _streams(seed)[1]
  scores = model.logits()[1:, 1:] + noise * rng.gumbel(
      size=(n_users, n_items))
  # Sorted: argpartition's order differs between numpy builds and CPUs.
  top = np.sort(np.argpartition(-scores, per_user - 1, axis=1)[:, :per_user],
                axis=1)
  users = np.repeat(np.arange(1, n_users + 1, dtype=np.int32), per_user)
  items = (top.reshape(-1) + 1).astype(np.int32)
  times = rng.permutation(users.size).astype(np.int64)
  order = np.lexsort((times, users))
  return Interactions(
      users=users[order], items=items[order], n_users=n_users,
      n_items=n_items, ratings=np.ones(users.size, np.float32),
      timestamps=times[order], name="synthetic")


def _streams(seed: int) -> list[np.random.Generator]:
  """Independent generators: [model draws, sampling draws].

  Separate streams keep `planted_model(seed)` equal to the model that
  `planted(seed=seed)` samples from, whatever the sampling arguments.
  """
  return np.random.default_rng(seed).spawn(2)
