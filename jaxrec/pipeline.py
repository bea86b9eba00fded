"""Two-stage recommendation: candidate generation, ranking, top-K.

Stage 1 embeds the users (a two-tower's user tower, or MF user rows) and
asks an `ItemIndex` (`jaxrec.retrieval`, FAISS) for each user's
`n_candidates` best unseen items.  Stage 2 scores those candidates with a
ranker, any `rank(users (B,), candidates (B, C)) -> (B, C)` (e.g. DeepFM on
user and item features, `deepfm_ranker`), and keeps the top k.  Padding id
0 (where the index found too few items) never survives stage 2.

Legend: B = users per call, C = candidates, K = results, S = CTR slots,
U = users, I = items, D = embedding dim.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import retrieval

RankFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass
class Pipeline:
  """Candidate generation + ranking.

  Attributes:
    user_vectors: (users (B,) int) -> (B, D) float query vectors.
    index: the item index (items 1..n).
    rank: the ranker; None = keep stage 1's order (candidates only).
    seen_indptr, seen_items: CSR over user ids of items never to
      recommend (e.g. the training items), or None.
    n_candidates: C, items passed from stage 1 to stage 2.
  """

  user_vectors: Callable[[np.ndarray], np.ndarray]
  index: retrieval.ItemIndex
  rank: RankFn | None = None
  seen_indptr: np.ndarray | None = None
  seen_items: np.ndarray | None = None
  n_candidates: int = 500

  def candidates(self, user_ids: np.ndarray, n: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: (scores (B, n), items (B, n)) best unseen items first."""
    user_ids = np.asarray(user_ids, np.int64)
    exclude = None
    if self.seen_indptr is not None:
      exclude = retrieval.exclusion_lists(self.seen_indptr, self.seen_items,
                                          user_ids)
    queries = np.asarray(self.user_vectors(user_ids), np.float32)
    return self.index.search(queries, n or self.n_candidates, exclude)

  def recommend(self, user_ids, k: int = 10
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items per user: (items (B, k) int32, scores (B, k) float32).

    Scores are the ranker's (stage 1's without a ranker); rows with fewer
    than k valid candidates end in item 0 with score -inf.
    """
    scores, cands = self.candidates(user_ids)
    if self.rank is None:
      return cands[:, :k], scores[:, :k]
    top_scores, top_items = _rank_top_k(
        self.rank, jnp.asarray(np.asarray(user_ids, np.int32)),
        jnp.asarray(cands), k)
    return np.asarray(top_items), np.asarray(top_scores)


@functools.partial(jax.jit, static_argnames=("k",))
def _rank_top_k(rank: RankFn, users: jax.Array, cands: jax.Array, k: int):
  """(scores (B, k), items (B, k)) of the ranker's best k candidates."""
  scores = rank(users, cands)
  scores = jnp.where(cands == 0, -jnp.inf, scores)
  top, pos = jax.lax.top_k(scores, k)
  return top, jnp.take_along_axis(cands, pos, axis=1)


@flax.struct.dataclass
class PairTables:
  """CTR slots of every user and every item, to assemble any (user, item).

  Attributes:
    user_ids, user_values: (U+1, Su) the user fields' slots.
    item_ids, item_values: (I+1, Si) the item fields' slots.
    order: (S,) where each slot of [user slots, item slots] goes in the
      ranker's slot order.
  """

  user_ids: jax.Array
  user_values: jax.Array
  item_ids: jax.Array
  item_values: jax.Array
  order: jax.Array

  def pairs(self, users: jax.Array, items: jax.Array):
    """users (...), items (...) -> ids (..., S) int32, values (..., S)."""
    ids = jnp.concatenate([self.user_ids[users], self.item_ids[items]], -1)
    vals = jnp.concatenate([self.user_values[users],
                            self.item_values[items]], -1)
    return ids[..., self.order], vals[..., self.order]

  def pairs_np(self, users: np.ndarray, items: np.ndarray):
    """The same in numpy (for building training batches on the host)."""
    t = jax.tree.map(np.asarray, self)
    ids = np.concatenate([t.user_ids[users], t.item_ids[items]], -1)
    vals = np.concatenate([t.user_values[users], t.item_values[items]], -1)
    return ids[..., t.order], vals[..., t.order]


def pair_tables(encode_pairs, slot_fields, field_names, user_fields,
                user_raw: np.ndarray, item_raw: np.ndarray) -> PairTables:
  """Splits a CTR encoder's slots into per-user and per-item tables.

  Args:
    encode_pairs: (users (N,), items (N,)) raw ids -> (ids, values) (N, S),
      e.g. `ctr_datasets.ML1MFeatures.encode_pairs`.
    slot_fields, field_names: the encoder's layout.
    user_fields: names of the fields that depend on the user only; every
      other field must depend on the item only.
    user_raw: (U+1,) raw id of each internal user id (row 0 ignored).
    item_raw: (I+1,) raw id of each internal item id (row 0 ignored).
  """
  is_user = np.array([field_names[f] in user_fields for f in slot_fields])
  u_ids, u_vals = encode_pairs(user_raw[1:],
                               np.full(len(user_raw) - 1, item_raw[1]))
  i_ids, i_vals = encode_pairs(np.full(len(item_raw) - 1, user_raw[1]),
                               item_raw[1:])
  pad = lambda x: np.concatenate([np.zeros_like(x[:1]), x])  # row 0
  order = np.argsort(np.r_[np.flatnonzero(is_user),
                           np.flatnonzero(~is_user)], kind="stable")
  tables = PairTables(pad(u_ids[:, is_user]), pad(u_vals[:, is_user]),
                      pad(i_ids[:, ~is_user]), pad(i_vals[:, ~is_user]),
                      order.astype(np.int32))
  return jax.tree.map(jnp.asarray, tables)


def ctr_ranker(apply_fn, variables, tables: PairTables) -> RankFn:
  """A ranker from a CTR model `apply_fn(variables, ids, values)` (B,)."""

  def rank(vt, users, cands):
    variables, tables = vt
    u = jnp.broadcast_to(users[:, None], cands.shape)
    ids, vals = tables.pairs(u, cands)                    # (B, C, S)
    flat = lambda x: x.reshape(-1, x.shape[-1])
    return apply_fn(variables, flat(ids), flat(vals)).reshape(cands.shape)

  return jax.tree_util.Partial(rank, (variables, tables))


def score_ranker(score_fn, params) -> RankFn:
  """A ranker from any `score(params, users (B,), candidates (B, C))`
  (e.g. MF, NeuMF): the model family's own scores."""
  return jax.tree_util.Partial(score_fn, params)


def list_metrics(recommended: np.ndarray, targets: np.ndarray,
                 k: int) -> dict[str, np.ndarray]:
  """Per-user HR@k and NDCG@k of one target in a ranked list (B, >= k)."""
  hit = recommended[:, :k] == targets[:, None]
  rank = np.where(hit.any(1), hit.argmax(1), k)
  return {f"HR@{k}": (rank < k).astype(np.float32),
          f"NDCG@{k}": np.where(rank < k, 1 / np.log2(rank + 2), 0.0
                                ).astype(np.float32)}
