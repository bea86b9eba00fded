"""LR, FM, FFM, DeepFM and Wide&Deep against brute-force references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.models import deepfm, fm

N_FEATURES = 12
SLOT_FIELDS = (0, 1, 2, 2, 2)  # field 2 is multi-hot with 3 slots


def _batch(seed=0, b=6):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, N_FEATURES, (b, len(SLOT_FIELDS))).astype(np.int32)
  values = rng.uniform(0.1, 2.0, ids.shape).astype(np.float32)
  ids[0, 4], values[0, 4] = 0, 0.0  # a padded slot
  return jnp.asarray(ids), jnp.asarray(values)


def _init(model, ids, values):
  variables = model.init(jax.random.key(1), ids, values)
  # Scale up from the 1e-4 init so interactions matter numerically.
  return jax.tree.map(lambda x: x * 1000.0 if x.ndim == 2 else x, variables)


def test_fm_pairwise_equals_the_double_sum():
  rng = np.random.default_rng(0)
  for s, d in [(1, 3), (5, 4), (17, 8)]:
    v = rng.normal(size=(s, d))
    x = rng.normal(size=s)
    brute = sum(v[i] @ v[j] * x[i] * x[j]
                for i in range(s) for j in range(i + 1, s))
    np.testing.assert_allclose(fm.fm_pairwise(jnp.asarray(v), jnp.asarray(x)),
                               brute, rtol=1e-4, atol=1e-5)
  vb, xb = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 6))
  np.testing.assert_allclose(
      fm.fm_pairwise_batch(jnp.asarray(vb), jnp.asarray(xb)),
      [fm.fm_pairwise(jnp.asarray(a), jnp.asarray(b)) for a, b in zip(vb, xb)],
      rtol=1e-5)


def _linear(p, ids, values):
  w = np.asarray(p["linear"]["w"]["embedding"])[:, 0]
  return float(p["linear"]["bias"]) + (w[ids] * values).sum(-1)


def test_lr_and_fm_match_rendles_formula():
  ids, values = _batch()
  for cls in (fm.LR, fm.FM):
    model = cls(n_features=N_FEATURES, slot_fields=SLOT_FIELDS, dim=4)
    variables = _init(model, ids, values)
    got = np.asarray(model.apply(variables, ids, values))
    p = variables["params"]
    want = _linear(p, np.asarray(ids), np.asarray(values))
    if cls is fm.FM:
      v = np.asarray(p["v"]["embedding"])
      for b in range(ids.shape[0]):
        e, x = v[np.asarray(ids[b])], np.asarray(values[b])
        want[b] += sum(e[i] @ e[j] * x[i] * x[j]
                       for i, j in itertools.combinations(range(e.shape[0]), 2))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_ffm_uses_field_aware_vectors_for_every_cross_field_pair():
  ids, values = _batch(1)
  model = fm.FFM(n_features=N_FEATURES, slot_fields=SLOT_FIELDS, dim=3)
  variables = _init(model, ids, values)
  p = variables["params"]
  v = np.asarray(p["v"]["embedding"]).reshape(N_FEATURES, 3, 3)
  want = _linear(p, np.asarray(ids), np.asarray(values))
  for b in range(ids.shape[0]):
    for i, j in itertools.combinations(range(len(SLOT_FIELDS)), 2):
      fi, fj = SLOT_FIELDS[i], SLOT_FIELDS[j]
      if fi == fj:
        continue
      a, c = int(ids[b, i]), int(ids[b, j])
      want[b] += v[a, fj] @ v[c, fi] * values[b, i] * values[b, j]
  np.testing.assert_allclose(model.apply(variables, ids, values), want,
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls", [fm.LR, fm.FM, fm.FFM, deepfm.DeepFM,
                                 deepfm.WideDeep])
def test_padding_changes_nothing_and_gets_no_gradient(cls):
  ids, values = _batch(2)
  kw = dict(hidden=(8,)) if cls in (deepfm.DeepFM, deepfm.WideDeep) else {}
  model = cls(n_features=N_FEATURES, slot_fields=SLOT_FIELDS, **kw)
  variables = _init(model, ids, values)
  # Appending a padded slot to the multi-hot field leaves every logit as is.
  model2 = cls(n_features=N_FEATURES, slot_fields=SLOT_FIELDS + (2,), **kw)
  pad = lambda a: jnp.concatenate([a, jnp.zeros_like(a[:, :1])], axis=1)
  np.testing.assert_allclose(model2.apply(variables, pad(ids), pad(values)),
                             model.apply(variables, ids, values), rtol=1e-5,
                             atol=1e-6)
  grads = jax.grad(lambda p: model.apply(
      {**variables, "params": p}, ids, values).sum())(variables["params"])
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    if path[-1].key == "embedding":
      assert not np.asarray(g[0]).any(), path  # row 0 = padding


def test_deepfm_is_fm_plus_an_mlp_on_pooled_field_embeddings():
  ids, values = _batch(3)
  model = deepfm.DeepFM(n_features=N_FEATURES, slot_fields=SLOT_FIELDS,
                        dim=4, hidden=(8, 8))
  variables = _init(model, ids, values)
  p = variables["params"]
  fm_model = fm.FM(n_features=N_FEATURES, slot_fields=SLOT_FIELDS, dim=4)
  fm_part = fm_model.apply({"params": {"linear": p["linear"], "v": p["v"]}},
                           ids, values)
  v = p["v"]["embedding"][ids] * values[..., None]        # (B, S, D)
  pooled = jnp.concatenate([v[:, 0], v[:, 1], v[:, 2:].sum(1)], axis=-1)
  deep = deepfm.DNN((8, 8)).apply({"params": p["dnn"]}, pooled)
  np.testing.assert_allclose(model.apply(variables, ids, values),
                             fm_part + deep, rtol=1e-4, atol=1e-5)
  wd = deepfm.WideDeep(n_features=N_FEATURES, slot_fields=SLOT_FIELDS, dim=4,
                       hidden=(8, 8))
  lin = fm.LR(n_features=N_FEATURES, slot_fields=SLOT_FIELDS).apply(
      {"params": {"linear": p["linear"]}}, ids, values)
  np.testing.assert_allclose(wd.apply(variables, ids, values), lin + deep,
                             rtol=1e-4, atol=1e-5)


def test_batch_norm_and_dropout_only_act_in_training():
  ids, values = _batch(4)
  model = deepfm.DeepFM(n_features=N_FEATURES, slot_fields=SLOT_FIELDS,
                        hidden=(8,), dropout=0.5, batch_norm=True)
  variables = _init(model, ids, values)
  assert "batch_stats" in variables
  a = model.apply(variables, ids, values)
  np.testing.assert_array_equal(a, model.apply(variables, ids, values))
  train = lambda seed: model.apply(
      variables, ids, values, train=True, rngs={"dropout": jax.random.key(seed)},
      mutable=["batch_stats"])
  (t1, stats), (t2, _) = train(0), train(1)
  assert not np.allclose(t1, t2)  # dropout masks differ
  assert not np.allclose(stats["batch_stats"]["dnn"]["BatchNorm_0"]["mean"],
                         variables["batch_stats"]["dnn"]["BatchNorm_0"]["mean"])
