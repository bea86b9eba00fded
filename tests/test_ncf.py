"""NCF models and the NCF paper's ML-1M split."""

import os
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxrec.models import ncf
from jaxrec.models.layers import Tower
from jaxrec.train import setup


def _params(model):
  ids = jnp.ones((1,), jnp.int32)
  return model.init(jax.random.key(0), ids, ids)["params"]


def test_tower_follows_the_paper():
  # Predictive factor 8 with 3 layers: embeddings 16, tower 32-16-8 (§4.1).
  assert ncf.tower_widths(8, 3) == (32, 16, 8)
  assert ncf.mlp_embed_dim(8, 3) == 16
  params = _params(ncf.MLP(n_users=5, n_items=4, factors=8, layers=3))
  assert params["user_embed"]["embedding"].shape == (6, 16)
  assert params["tower"]["dense_0"]["kernel"].shape == (32, 32)
  assert params["tower"]["dense_2"]["kernel"].shape == (16, 8)
  assert params["out"]["kernel"].shape == (8, 1)
  zero = _params(ncf.MLP(n_users=5, n_items=4, factors=8, layers=0))
  assert zero["out"]["kernel"].shape == (16, 1)
  # The released code's widths (--layers [64,32,16,8]): embeddings 32.
  for cls in (ncf.MLP, ncf.NeuMF):
    code = _params(cls(n_users=5, n_items=4, factors=8, embed_dim=32))
    prefix = "mlp_" if cls is ncf.NeuMF else ""
    assert code[prefix + "user_embed"]["embedding"].shape == (6, 32)
    assert code["tower"]["dense_0"]["kernel"].shape == (64, 32)


@pytest.mark.parametrize("cls", [ncf.MLP, ncf.NeuMF])
def test_dense_init_sets_the_towers_kernel_scale_only(cls):
  # LeCun-normal: std sqrt(1 / fan_in); Glorot-uniform (the authors' Keras
  # default): std sqrt(2 / (fan_in + fan_out)).  Embeddings and the output
  # layer keep their own initialisers.
  model = lambda init: cls(n_users=50, n_items=40, factors=64,
                           dense_init=init)
  lecun, glorot = _params(model("lecun_normal")), _params(model(
      "glorot_uniform"))
  for i, (fan_in, fan_out) in enumerate([(256, 256), (256, 128),
                                         (128, 64)]):
    k_lecun = lecun["tower"][f"dense_{i}"]["kernel"]
    k_glorot = glorot["tower"][f"dense_{i}"]["kernel"]
    assert k_glorot.shape == (fan_in, fan_out)
    np.testing.assert_allclose(k_lecun.std(), (1 / fan_in) ** 0.5, rtol=0.05)
    np.testing.assert_allclose(k_glorot.std(),
                               (2 / (fan_in + fan_out)) ** 0.5, rtol=0.05)
    assert np.abs(k_glorot).max() <= (6 / (fan_in + fan_out)) ** 0.5
  for name in lecun:
    if name != "tower":
      jax.tree.map(np.testing.assert_array_equal, lecun[name], glorot[name])


@pytest.mark.parametrize("cls", [ncf.GMF, ncf.MLP, ncf.NeuMF])
def test_out_init_sets_the_output_kernel_scale_only(cls):
  # Default: nn.Dense's LeCun-normal, std sqrt(1 / fan_in) = 0.125 or
  # 0.088 here; 'normal': N(0, 0.01^2), the paper's text.  No other
  # parameter moves, nor the output bias.
  model = lambda init: cls(n_users=50, n_items=40, factors=64,
                           out_init=init)
  plain, normal = _params(model("lecun_normal")), _params(model("normal"))
  fan_in = 128 if cls is ncf.NeuMF else 64
  ids = jnp.ones((1,), jnp.int32)
  assert plain["out"]["kernel"].std() > 0.07
  assert 0.006 < normal["out"]["kernel"].std() < 0.015
  assert normal["out"]["kernel"].shape == (fan_in, 1)
  for name in plain:
    if name != "out":
      jax.tree.map(np.testing.assert_array_equal, plain[name], normal[name])
  np.testing.assert_array_equal(plain["out"]["bias"], normal["out"]["bias"])
  with pytest.raises(ValueError, match="out_init 'gauss' is not a"):
    cls(n_users=5, n_items=4, out_init="gauss").init(jax.random.key(0), ids,
                                                    ids)


class _PlainGMF(nn.Module):
  """GMF as built before out_init: nn.Dense's own default output layer."""

  def setup(self):
    self.user_embed = ncf._embed(50, 64)
    self.item_embed = ncf._embed(40, 64)
    self.out = nn.Dense(1)

  def __call__(self, users, items):
    return self.out(self.user_embed(users) * self.item_embed(items))


def test_default_out_init_draws_what_nn_dense_draws():
  # The option must not move the plain rows' initial parameters.
  jax.tree.map(np.testing.assert_array_equal,
               _params(ncf.GMF(n_users=50, n_items=40, factors=64)),
               _params(_PlainGMF()))


class _PlainTower(nn.Module):
  """Tower's layers with nn.Dense's own default initialisers."""

  def setup(self):
    self.dense = [nn.Dense(8), nn.Dense(4)]

  def __call__(self, x):
    return self.dense[1](nn.relu(self.dense[0](x)))


def test_default_dense_init_is_flax_dense_default():
  # The option must not move the plain rows: by default the tower draws
  # the same parameters as layers built with nn.Dense's default.
  x = jnp.ones((2, 16))
  ours = Tower((8, 4)).init(jax.random.key(3), x)["params"]
  plain = _PlainTower().init(jax.random.key(3), x)["params"]
  jax.tree.map(np.testing.assert_array_equal, ours, plain)
  glorot = Tower((8, 4), kernel_init="glorot_uniform").init(
      jax.random.key(3), x)["params"]
  assert not np.array_equal(glorot["dense_0"]["kernel"],
                            plain["dense_0"]["kernel"])
  with pytest.raises(ValueError, match="'glorot' is not a"):
    Tower((8, 4), kernel_init="glorot").init(jax.random.key(3), x)


@pytest.mark.parametrize("cls", [ncf.MLP, ncf.NeuMF])
def test_bfloat16_tower_keeps_float32_parameters_and_gradients(cls):
  kw = dict(n_users=30, n_items=20, factors=16)
  f32, bf16 = cls(**kw), cls(tower_dtype="bfloat16", **kw)
  params = _params(f32)
  assert {leaf.dtype for leaf in jax.tree.leaves(_params(bf16))} == {
      jnp.dtype(jnp.float32)}
  users, items = jnp.arange(30) + 1, jnp.arange(30) % 20 + 1
  logits = lambda model: model.apply({"params": params}, users, items)
  assert logits(bf16).dtype == jnp.float32
  # Same parameters, products rounded to bfloat16's 8-bit significand.
  np.testing.assert_allclose(logits(bf16), logits(f32), rtol=0.02,
                             atol=0.02 * np.abs(logits(f32)).max())
  grads = jax.grad(lambda p: bf16.apply({"params": p}, users, items).sum())(
      params)
  assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
  with pytest.raises(ValueError, match="matmul='xla'"):
    _params(cls(tower_dtype="bfloat16", matmul="blas", **kw))


def test_mixed_precision_and_fused_mlps_learn_the_planted_signal(
    tmp_path, monkeypatch):
  """Mixed precision trains: tower_dtype='bfloat16' (lax, bfloat16
  activations) and matmul='blas_bf16' (MKL's bfloat16 products of float32
  layers, here at every size) each reach float32's NDCG@10, as does the
  float32 tower made by one fused kernel call each way
  (matmul='blas_fused', jaxrec.kernels.tower, here at every size)."""
  # MLP, not NeuMF: no GMF half to learn the signal without the tower.
  from experiments.configs.base import base_config
  from jaxrec.kernels import blas, tower
  from jaxrec.train.loop import train_and_evaluate
  monkeypatch.setattr(blas, "MIN_FLOPS", 0)
  monkeypatch.setattr(tower, "MIN_FLOPS", 0)
  c = base_config()
  c.data.synthetic.update(n_users=400, n_items=150, per_user=30, seed=0)
  c.optim.learning_rate = 0.01
  c.train.update({"epochs": 12, "batch_size": 256, "steps_per_call": 16,
                  "log_every_steps": 1000})
  c.eval.n_negatives = 50
  variants = {"float32": {}, "bfloat16": {"tower_dtype": "bfloat16"}}
  if blas.available():
    variants["blas_bf16"] = {"matmul": "blas_bf16"}
    variants["blas_fused"] = {"matmul": "blas_fused"}
  ndcg = {}
  for name, fields in variants.items():
    c.model = ml_collections.ConfigDict({"name": "mlp", "factors": 8,
                                         "layers": 3, **fields})
    ndcg[name] = train_and_evaluate(c, tmp_path / name)["test"][
        "full/NDCG@10"]
  c.model = ml_collections.ConfigDict({"name": "popularity"})
  pop = train_and_evaluate(c, tmp_path / "pop")["test"]["full/NDCG@10"]
  assert ndcg["float32"] > 1.3 * pop
  for name in variants:
    assert ndcg[name] > 0.9 * ndcg["float32"], (ndcg, pop)


@pytest.mark.parametrize("cls", [ncf.GMF, ncf.MLP, ncf.NeuMF])
def test_score_agrees_with_pairs(cls):
  model = cls(n_users=6, n_items=9, factors=4)
  params = _params(model)
  users = jnp.array([1, 3, 6], jnp.int32)
  shared = model.apply({"params": params}, users, jnp.arange(1, 10),
                       method="score")
  assert shared.shape == (3, 9)
  pairs = model.apply({"params": params}, jnp.repeat(users, 9),
                      jnp.tile(jnp.arange(1, 10), 3))
  np.testing.assert_allclose(shared.reshape(-1), pairs, rtol=1e-5,
                             atol=1e-7)


@pytest.mark.parametrize("cls", [ncf.GMF, ncf.MLP, ncf.NeuMF])
def test_l2_penalty_is_each_rows_embedding_squares(cls):
  model = cls(n_users=6, n_items=9, factors=4)
  params = _params(model)
  users = jnp.array([1, 3, 3], jnp.int32)
  items = jnp.array([[2, 5], [9, 9], [1, 4]], jnp.int32)   # (B, K)
  got = model.apply({"params": params}, users, items, method="l2_penalty")
  tables = {k: np.asarray(v["embedding"]) for k, v in params.items()
            if k.endswith("_embed")}
  assert len(tables) == (4 if cls is ncf.NeuMF else 2)
  want = np.zeros(3)
  for b in range(3):
    for name, table in tables.items():
      ids = [users[b]] if "user" in name else list(items[b])
      want[b] += sum(float(np.sum(table[int(i)] ** 2)) for i in ids)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_pretrained_neumf_mixes_gmf_and_mlp_logits():
  n_users, n_items = 7, 11
  gmf = ncf.GMF(n_users=n_users, n_items=n_items, factors=4)
  mlp = ncf.MLP(n_users=n_users, n_items=n_items, factors=4, layers=2)
  gp, mp = _params(gmf), _params(mlp)
  gp = jax.tree.map(lambda x: x * 30, gp)  # non-trivial logits
  mp = jax.tree.map(lambda x: x * 30, mp)
  neumf = ncf.NeuMF(n_users=n_users, n_items=n_items, factors=4, layers=2)
  params = ncf.neumf_from_pretrained(gp, mp, alpha=0.5)
  # Same structure as a fresh NeuMF, so training can continue from it.
  assert jax.tree.structure(params) == jax.tree.structure(_params(neumf))
  u = jnp.arange(1, 8, dtype=jnp.int32)
  i = jnp.arange(2, 9, dtype=jnp.int32)
  want = 0.5 * gmf.apply({"params": gp}, u, i) + 0.5 * mlp.apply(
      {"params": mp}, u, i)
  got = neumf.apply({"params": params}, u, i)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(want).max()) > 0.1


def _run_config(model: dict, epochs: int = 1, refit: bool = False):
  """A tiny synthetic run of `model` (60 users, 40 items)."""
  from ml_collections import ConfigDict
  from experiments.configs.base import base_config
  c = base_config()
  c.data.synthetic.update(n_users=60, n_items=40, per_user=8)
  c.model = ConfigDict(model)
  c.train.update(epochs=epochs, batch_size=64, refit=refit)
  c.eval.n_negatives = 10
  return c


def test_pretrained_params_round_trip_through_a_run(tmp_path):
  from jaxrec.train.loop import train_and_evaluate
  train_and_evaluate(_run_config({"name": "gmf", "factors": 4}),
                     tmp_path / "gmf")
  train_and_evaluate(_run_config({"name": "mlp", "factors": 4, "layers": 2}),
                     tmp_path / "mlp")
  c = _run_config({"name": "neumf", "factors": 4, "layers": 2,
                   "pretrained": {"gmf": str(tmp_path / "gmf"),
                                  "mlp": str(tmp_path / "mlp"),
                                  "alpha": 0.5}})
  c.optim.name = "sgd"
  c.optim.learning_rate = 0.0  # no update: the result is the mixture
  result = train_and_evaluate(c, tmp_path / "neumf")
  gp = setup.pretrained_params(tmp_path / "gmf", 60, 40)
  mp = setup.pretrained_params(tmp_path / "mlp", 60, 40)
  neumf = setup.pretrained_params(tmp_path / "neumf", 60, 40)
  np.testing.assert_array_equal(neumf["gmf_item_embed"]["embedding"],
                                gp["item_embed"]["embedding"])
  np.testing.assert_array_equal(neumf["tower"]["dense_1"]["kernel"],
                                mp["tower"]["dense_1"]["kernel"])
  assert np.isfinite(result["test"]["full/NDCG@10"])


def test_a_pretrained_neumf_refit_starts_from_its_halves_refits(tmp_path):
  from jaxrec.train.loop import train_and_evaluate

  def config(model, refit=True):
    return _run_config(model, epochs=2, refit=refit)

  for name, model in (("gmf", {"name": "gmf", "factors": 4}),
                      ("mlp", {"name": "mlp", "factors": 4, "layers": 2})):
    train_and_evaluate(config(model, refit=False), tmp_path / "plain" / name)
    train_and_evaluate(config(model), tmp_path / "refit" / name)
  neumf = {"name": "neumf", "factors": 4, "layers": 2,
           "pretrained": {"alpha": 0.5}}

  def pretrained_neumf(halves):
    neumf["pretrained"].update(gmf=str(tmp_path / halves / "gmf"),
                               mlp=str(tmp_path / halves / "mlp"))
    c = config(neumf)
    c.optim.update(name="sgd", learning_rate=0.0)  # stays the mixture
    return c

  with pytest.raises(FileNotFoundError, match="plain/gmf/refit.*GMF run "
                     "refit too"):
    train_and_evaluate(pretrained_neumf("plain"), tmp_path / "neumf_plain")
  train_and_evaluate(pretrained_neumf("refit"), tmp_path / "neumf")
  params = lambda run: setup.pretrained_params(run, 60, 40)  # noqa: E731
  first, second = (params(tmp_path / "neumf"),
                   params(tmp_path / "neumf" / "refit"))
  half, half_refit = (params(tmp_path / "refit" / "gmf"),
                      params(tmp_path / "refit" / "gmf" / "refit"))
  # Phase 1 fine-tunes the train-only halves, phase 2 their refits.
  np.testing.assert_array_equal(first["gmf_item_embed"]["embedding"],
                                half["item_embed"]["embedding"])
  np.testing.assert_array_equal(second["gmf_item_embed"]["embedding"],
                                half_refit["item_embed"]["embedding"])
  assert not np.array_equal(half["item_embed"]["embedding"],
                            half_refit["item_embed"]["embedding"])


DATA = Path(os.environ.get("JAXREC_DATA_DIR", "/nonexistent"))


@pytest.mark.skipif(not (DATA / "ncf/ml-1m.loo.test.csv").exists(),
                    reason="NCF files not present")
def test_ncf_split_matches_the_paper_counts():
  from jaxrec.data import ncf as ncf_data
  split, negatives = ncf_data.load_split(DATA)
  assert len(split.train) + len(split.valid) == 994_169
  assert len(split.test) == len(split.valid) == 6_040
  assert negatives.shape == (6_040, 99)
  # NCF's quirk: 156 users have their test item among the negatives.
  assert int((negatives == split.test.items[:, None]).any(1).sum()) == 156
  # No negative is a training or validation item of its user.
  known = set(zip(np.r_[split.train.users, split.valid.users].tolist(),
                  np.r_[split.train.items, split.valid.items].tolist()))
  rows = np.repeat(split.test.users, 99)
  assert not any((u, i) in known for u, i in
                 zip(rows[:50_000].tolist(), negatives.ravel()[:50_000]
                     .tolist()))
