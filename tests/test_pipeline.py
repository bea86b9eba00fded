"""Two-stage pipeline: brute-force equality, exclusion, feature assembly."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import pipeline, retrieval
from jaxrec.models.deepfm import DeepFM

N_USERS, N_ITEMS, DIM = 12, 80, 6


def _setup(seed=0):
  rng = np.random.default_rng(seed)
  users = rng.normal(size=(N_USERS + 1, DIM)).astype(np.float32)
  items = rng.normal(size=(N_ITEMS + 1, DIM)).astype(np.float32)
  ranker_scores = rng.normal(size=(N_USERS + 1, N_ITEMS + 1)).astype(
      np.float32)
  seen = [rng.choice(np.arange(1, N_ITEMS + 1), rng.integers(0, 20),
                     replace=False) for _ in range(N_USERS + 1)]
  indptr = np.r_[0, np.cumsum([len(s) for s in seen])]
  return users, items, ranker_scores, seen, indptr, np.concatenate(seen)


def _table_ranker(table):
  return jax.tree_util.Partial(lambda t, u, c: t[u[:, None], c],
                               jnp.asarray(table))


def test_recommend_equals_brute_force_two_stages():
  users, items, table, seen, indptr, flat = _setup()
  pipe = pipeline.Pipeline(lambda u: users[u],
                           retrieval.ItemIndex(items), _table_ranker(table),
                           indptr, flat.astype(np.int32), n_candidates=15)
  ids = np.arange(1, N_USERS + 1)
  got, scores = pipe.recommend(ids, k=5)
  for row, u in enumerate(ids):
    unseen = [i for i in range(1, N_ITEMS + 1) if i not in set(seen[u])]
    stage1 = sorted(unseen, key=lambda i: -users[u] @ items[i])[:15]
    want = sorted(stage1, key=lambda i: -table[u, i])[:5]
    np.testing.assert_array_equal(got[row], want)
    np.testing.assert_allclose(scores[row], table[u, want], rtol=1e-6)
    assert not set(got[row]) & set(seen[u])


def test_without_ranker_recommend_is_stage_one():
  users, items, _, _, indptr, flat = _setup()
  pipe = pipeline.Pipeline(lambda u: users[u], retrieval.ItemIndex(items),
                           None, indptr, flat.astype(np.int32))
  ids = np.arange(1, N_USERS + 1)
  got = pipe.recommend(ids, k=7)[0]
  np.testing.assert_array_equal(got, pipe.candidates(ids, 7)[1])


def test_padding_never_outranks_real_candidates():
  users, items, table, _, _, _ = _setup()
  table[:, 0] = 1e6  # a ranker that would love padding
  small = items[:4]  # 3 items only
  pipe = pipeline.Pipeline(lambda u: users[u], retrieval.ItemIndex(small),
                           _table_ranker(table), n_candidates=10)
  got, scores = pipe.recommend(np.array([1, 2]), k=5)
  assert (np.sort(got[:, :3], 1) == [1, 2, 3]).all()
  assert (got[:, 3:] == 0).all() and np.isneginf(scores[:, 3:]).all()


def _encode(users, items):
  """A fake CTR encoder: slots [user, movie, gender, genre, genre]."""
  users, items = np.asarray(users), np.asarray(items)
  ids = np.stack([users, 100 + items, 50 + users % 2, 200 + items % 3,
                  200 + 3 + items % 2], 1).astype(np.int32)
  return ids, np.stack([np.ones_like(users, np.float32)] * 2 + [
      np.ones_like(users, np.float32)] + [np.full(users.shape, 0.5,
                                                  np.float32)] * 2, 1)


FIELDS = ("user", "movie", "gender", "genres")
SLOT_FIELDS = (0, 1, 2, 3, 3)


def test_pair_tables_reassemble_the_encoder():
  raw_users = np.arange(0, N_USERS + 1) + 1000
  raw_items = np.arange(0, N_ITEMS + 1) * 7
  tables = pipeline.pair_tables(_encode, SLOT_FIELDS, FIELDS,
                                {"user", "gender"}, raw_users, raw_items)
  rng = np.random.default_rng(0)
  u = rng.integers(1, N_USERS + 1, (4, 9))
  i = rng.integers(1, N_ITEMS + 1, (4, 9))
  want = _encode(raw_users[u].ravel(), raw_items[i].ravel())
  for got in (tables.pairs(jnp.asarray(u), jnp.asarray(i)),
              tables.pairs_np(u, i)):
    np.testing.assert_array_equal(np.asarray(got[0]).reshape(-1, 5), want[0])
    np.testing.assert_array_equal(np.asarray(got[1]).reshape(-1, 5), want[1])


def test_ctr_ranker_scores_like_the_model_on_encoded_pairs():
  raw_users, raw_items = np.arange(N_USERS + 1), np.arange(N_ITEMS + 1)
  tables = pipeline.pair_tables(_encode, SLOT_FIELDS, FIELDS,
                                {"user", "gender"}, raw_users, raw_items)
  model = DeepFM(n_features=300, slot_fields=SLOT_FIELDS, dim=4,
                 hidden=(8,))
  ids, vals = _encode(np.array([1, 2]), np.array([3, 4]))
  variables = model.init(jax.random.key(0), jnp.asarray(ids),
                         jnp.asarray(vals))
  rank = pipeline.ctr_ranker(model.apply, variables, tables)
  users = jnp.array([3, 5])
  cands = jnp.array([[1, 2, 9], [4, 4, 7]])
  got = rank(users, cands)
  ids, vals = _encode(np.repeat([3, 5], 3), np.asarray(cands).ravel())
  want = model.apply(variables, jnp.asarray(ids), jnp.asarray(vals))
  np.testing.assert_allclose(got, np.asarray(want).reshape(2, 3), rtol=1e-5)


def test_list_metrics():
  lists = np.array([[5, 3, 9], [1, 2, 4], [7, 8, 6]])
  m = pipeline.list_metrics(lists, np.array([3, 4, 1]), k=2)
  np.testing.assert_allclose(m["HR@2"], [1, 0, 0])
  np.testing.assert_allclose(m["NDCG@2"], [1 / np.log2(3), 0, 0])
