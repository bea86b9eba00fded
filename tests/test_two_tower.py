"""Two-tower: the sampled softmax, the towers, the estimator, a tiny run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import losses
from jaxrec.data import movielens
from jaxrec.models import two_tower
from jaxrec.train import retrieval as family


def _reference_softmax(logits, pos_index, pos_ids, cand_ids, log_q):
  """Per-row loss by a loop: drop accidental hits and padding, correct."""
  out = []
  for b in range(logits.shape[0]):
    keep = [j for j in range(logits.shape[1])
            if j == pos_index[b] or (cand_ids[j] != pos_ids[b]
                                     and cand_ids[j] != 0)]
    z = np.array([logits[b, j] - log_q[j] for j in keep], np.float64)
    p = keep.index(pos_index[b])
    out.append(np.log(np.exp(z).sum()) - z[p])
  return np.array(out)


def test_sampled_softmax_matches_loop_reference():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 9)).astype(np.float32)
  cand = np.array([3, 5, 3, 7, 0, 5, 9, 3, 2], np.int32)
  pos_index = np.array([0, 1, 2, 3, 5, 8])
  pos_ids = cand[pos_index]
  log_q = rng.normal(size=9).astype(np.float32)
  got = losses.sampled_softmax(jnp.asarray(logits), jnp.asarray(pos_index),
                               jnp.asarray(pos_ids), jnp.asarray(cand),
                               jnp.asarray(log_q))
  np.testing.assert_allclose(
      got, _reference_softmax(logits, pos_index, pos_ids, cand, log_q),
      rtol=1e-5)


def test_accidental_hit_gets_zero_softmax_mass():
  # Row 0's positive (item 4) is drawn again in column 2: its gradient,
  # softmax - onehot, must be exactly zero, i.e. zero softmax mass, even
  # with a logit that would otherwise dominate.
  logits = jnp.array([[0.0, 1.0, 50.0, -1.0], [0.5, 0.0, 2.0, 1.0]])
  cand = jnp.array([4, 6, 4, 8])
  loss = lambda z: losses.sampled_softmax(
      z, jnp.array([0, 1]), cand[:2], cand).sum()
  grad = jax.grad(loss)(logits)
  assert grad[0, 2] == 0.0
  assert grad[1, 2] != 0.0                # not a hit for row 1
  mass = grad[0] + jnp.array([1.0, 0, 0, 0])  # softmax of row 0
  assert float(mass.sum()) == pytest.approx(1.0)
  # Without removal the duplicate takes nearly all the mass.
  kept = jax.grad(lambda z: losses.sampled_softmax(
      z, jnp.array([0, 1])).sum())(logits)
  assert kept[0, 2] > 0.99


def test_logq_is_shift_invariant_and_changes_the_loss():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)
  pos = jnp.arange(4)
  log_q = jnp.asarray(rng.normal(size=4), jnp.float32)
  a = losses.sampled_softmax(logits, pos, log_q=log_q)
  b = losses.sampled_softmax(logits, pos, log_q=log_q + 3.0)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  assert not np.allclose(a, losses.sampled_softmax(logits, pos))


def test_logq_corrected_in_batch_softmax_recovers_full_softmax():
  # Planted: items occur with probability q and batches are drawn from the
  # same stream. The full-softmax optimum of per-item scores is log q + c;
  # uncorrected, popular items are over-sampled as negatives by exactly q,
  # so the in-batch optimum is log q - log q = c: flat.
  rng = np.random.default_rng(0)
  n, b = 20, 64
  q = rng.dirichlet(np.full(n, 2.0))

  def fit(correct):
    @jax.jit
    def update(theta, items):
      def loss(th):
        logits = jnp.broadcast_to(th[items][None, :], (b, b))
        lq = jnp.log(jnp.asarray(q)[items - 1] * b) if correct else None
        return losses.sampled_softmax(logits, jnp.arange(b), items, items,
                                      log_q=lq).mean()
      return theta - 2.0 * jax.grad(loss)(theta)
    theta = jnp.zeros(n + 1)  # ids 1..n; 0 is padding
    for _ in range(400):
      theta = update(theta, jnp.asarray(rng.choice(n, b, p=q) + 1, jnp.int32))
    # Least-squares slope of the learned scores on log q (1 = recovered).
    return np.polyfit(np.log(q), np.asarray(theta[1:]), 1)[0]

  assert 0.9 < fit(True) < 1.1
  assert abs(fit(False)) < 0.2  # learns log q - log q: nearly flat


def test_triplet_hinge():
  got = losses.triplet(jnp.array([0.9, 0.1]), jnp.array([[0.5, 0.95],
                                                         [0.0, 0.2]]), 0.2)
  np.testing.assert_allclose(got, [(0 + 0.25) / 2, (0.1 + 0.3) / 2],
                             rtol=1e-6)


def _features():
  user_codes = np.array([[0, 0], [1, 2], [2, 1], [1, 1]], np.int32)
  item_codes = np.array([[0], [1], [2], [1], [2], [1]], np.int32)
  multi = np.zeros((6, 3), np.float32)
  multi[[1, 2, 3, 4, 5], [0, 1, 2, 0, 1]] = 1
  return two_tower.Features(user_codes, item_codes, multi)


def _model(**kw):
  f = _features()
  uv, iv, g = f.vocab
  return two_tower.TwoTower(n_users=3, n_items=5, user_vocab=uv,
                            item_vocab=iv, n_multi=g, dim=8, id_dim=4,
                            feature_dim=4, hidden=(16,), **kw), f


def test_towers_are_unit_vectors_and_score_is_cosine_over_tau():
  model, f = _model(init_temperature=0.5)
  users, items = jnp.array([1, 3]), jnp.arange(1, 6)
  params = model.init(jax.random.key(0), users, items[:2], f)
  u, v, tau = model.apply(params, users, items, f, method="embeddings")
  np.testing.assert_allclose(jnp.linalg.norm(u, axis=-1), 1, rtol=1e-5)
  np.testing.assert_allclose(jnp.linalg.norm(v, axis=-1), 1, rtol=1e-5)
  assert float(tau) == pytest.approx(0.5)
  shared = model.apply(params, users, items, f, method="score")
  per_row = model.apply(params, users, jnp.stack([items, items]), f,
                        method="score")
  np.testing.assert_allclose(shared, u @ v.T / 0.5, rtol=1e-5)
  np.testing.assert_allclose(shared, per_row, rtol=1e-5)
  assert shared.shape == (2, 5)


def test_item_features_reach_only_their_items():
  model, f = _model()
  params = model.init(jax.random.key(0), jnp.array([1]), jnp.array([1]), f)
  def score_item_2(multi):
    g = f.replace(item_multi=multi)
    return model.apply(params, jnp.array([1]), jnp.array([2]), g).sum()
  grad = jax.grad(score_item_2)(jnp.asarray(f.item_multi))
  assert jnp.abs(grad[2]).sum() > 0
  assert jnp.abs(grad.at[2].set(0)).sum() == 0


def test_temperature_is_learned_and_floored():
  model, f = _model(init_temperature=0.001, min_temperature=0.05)
  params = model.init(jax.random.key(0), jnp.array([1]), jnp.array([1]), f)
  tau = model.apply(params, jnp.array([1]), jnp.array([1]), f,
                    method="embeddings")[2]
  assert float(tau) == pytest.approx(0.05)
  model, f = _model()
  params = model.init(jax.random.key(0), jnp.array([1]), jnp.array([1]), f)
  grad = jax.grad(lambda p: model.apply(
      p, jnp.array([1, 2]), jnp.array([3, 4]), f).sum())(params)
  assert grad["params"]["log_temperature"] != 0


def test_streaming_estimator_learns_the_gap():
  # Item 1 every step, item 2 every 4th step, item 3 never.
  last, gap = jnp.zeros(4), jnp.full(4, 10.0)
  step_fn = jax.jit(family.streaming_update, static_argnums=4)
  for t in range(1, 400):
    items = jnp.array([1, 2] if t % 4 == 0 else [1, 1])
    last, gap = step_fn(last, gap, items, jnp.int32(t), 0.1)
  np.testing.assert_allclose(gap[1:3], [1.0, 4.0], rtol=1e-3)
  assert gap[3] == 10.0 and last[3] == 0


def test_movielens_features_codes():
  users = movielens.Users(
      age=np.array([0, 25, 18, 25], np.int32),
      gender=np.array([0, 1, 2, 1], np.int32),
      occupation=np.array([0, 3, 4, 3], np.int32),
      zip_code=np.array(["", "12345", "12399", "9"]), gender_vocab=(),
      occupation_vocab=())
  items = movielens.Items(
      raw_ids=np.array([-1, 1, 2]), title=np.array(["", "a", "b"]),
      year=np.array([0, 1995, 0], np.int32),
      genres=np.array([[0, 0], [1, 1], [0, 1]], np.uint8), genre_vocab=())
  f = two_tower.movielens_features(users, items)
  assert (f.user_codes[0] == 0).all()
  assert f.user_codes[1, 3] == f.user_codes[2, 3] != f.user_codes[3, 3]
  assert f.user_codes[1, 1] == f.user_codes[3, 1] != f.user_codes[2, 1]
  assert f.item_codes[2, 0] == 0 and f.item_codes[1, 0] > 0
  np.testing.assert_allclose(f.item_multi[1], [0.5, 0.5])


def _write_ml100k(root, rng, n_users=40, n_items=30):
  """Two user groups, each rating only its half of the items."""
  folder = root / "movielens-100k"
  folder.mkdir(parents=True)
  lines = []
  for u in range(1, n_users + 1):
    half = np.arange(1, n_items // 2 + 1) + (u % 2) * (n_items // 2)
    for i in rng.choice(half, 10, replace=False):
      lines.append(f"{u}\t{i}\t4\t{880000000 + len(lines)}")
  (folder / "u.data").write_text("\n".join(lines) + "\n")
  (folder / "u.user").write_text("".join(
      f"{u}|{20 + u % 3}|{'MF'[u % 2]}|writer|{10000 + u}\n"
      for u in range(1, n_users + 1)))
  (folder / "u.item").write_text("".join(
      f"{i}|Movie {i} (199{i % 10})|01-Jan-1995||url|" + "|".join(
          "1" if g == i % 19 else "0" for g in range(19)) + "\n"
      for i in range(1, n_items + 1)), encoding="latin-1")


@pytest.mark.parametrize("logq", ["counted", "streaming"])
def test_train_and_evaluate_learns_planted_groups(tmp_path, logq):
  from experiments.configs import two_tower_ml100k
  _write_ml100k(tmp_path, np.random.default_rng(0))
  c = two_tower_ml100k.get_config()
  c.data.dir = str(tmp_path)
  c.model.dim, c.model.id_dim, c.model.hidden = 8, 8, ()
  c.model.init_temperature = 0.2
  c.train.batch_size, c.train.epochs, c.train.logq = 16, 8, logq
  c.train.steps_per_call, c.eval.ks = 8, (5,)
  c.eval.select, c.eval.patience = "full/HR@5", 0
  c.optim.learning_rate = 0.02
  result = family.train_and_evaluate(c, tmp_path / "run")
  saved = json.loads((tmp_path / "run" / "results.json").read_text())
  assert saved["test"] == pytest.approx(result["test"])
  # With its ~8 training items masked, a user has ~22 candidates, ~7 of
  # them in its group's half: 5 random picks hit the test item with
  # probability about 5/22; a model that knows the groups, about 5/7.
  assert result["test"]["full/HR@5"] > 0.5
  assert result["protocol"] == family.ALL_ITEMS
  assert result["split"] == "tfrs-80-20"
