"""CTR metrics, the CTR loss and step, and tiny end-to-end runs."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import metrics
from jaxrec.data import ctr_datasets
from jaxrec.train import ctr


def _brute_auc(scores, labels):
  pos, neg = scores[labels == 1], scores[labels == 0]
  wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
  return wins.mean()


def test_auc_equals_pair_counting_with_ties_as_half():
  rng = np.random.default_rng(0)
  for n, levels in [(50, 5), (300, 1000), (7, 2)]:
    scores = rng.integers(0, levels, n).astype(float)  # many ties
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    assert metrics.auc(scores, labels) == pytest.approx(
        _brute_auc(scores, labels), abs=1e-12)
  assert metrics.auc([1.0, 1.0, 1.0], [0, 1, 1]) == 0.5
  assert metrics.auc([0.1, 0.9], [0, 1]) == 1.0
  assert np.isnan(metrics.auc([0.1, 0.9], [1, 1]))
  with pytest.raises(ValueError, match="NaN"):
    metrics.auc([np.nan, 0.2], [0, 1])


def test_log_loss_from_logits_matches_the_definition_and_is_stable():
  rng = np.random.default_rng(1)
  z, y = rng.normal(0, 3, 100), rng.integers(0, 2, 100)
  p = 1 / (1 + np.exp(-z))
  np.testing.assert_allclose(metrics.log_loss_per_example(z, y),
                             -(y * np.log(p) + (1 - y) * np.log(1 - p)),
                             rtol=1e-10)
  extreme = metrics.log_loss_per_example([800.0, -800.0], [0, 1])
  np.testing.assert_allclose(extreme, [800.0, 800.0])


def test_embedding_l2_covers_every_table_and_nothing_else():
  params = {"linear": {"bias": jnp.ones(()), "w": {"embedding": jnp.ones((3, 1))}},
            "v": {"embedding": 2 * jnp.ones((3, 2))},
            "dnn": {"Dense_0": {"kernel": 5 * jnp.ones((4, 4))}}}
  assert ctr.embedding_l2(params, 0.1) == pytest.approx(0.05 * (3 + 24))


def _frappe_fixture(root, n_valid=3000, n_test=1000):
  """libfm files whose label is an interaction of fields 0 and 1 only: no
  linear model can rank it, a factorisation model can."""
  folder = root / ctr_datasets.FRAPPE_FOLDER
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  sizes = [20, 30, 2, 2, 2, 2, 2, 2, 2, 2]
  offsets = np.cumsum([0] + sizes)
  def write(name, n):
    feats = np.stack([rng.integers(offsets[j], offsets[j + 1], n)
                      for j in range(10)], axis=1)
    label = (feats[:, 0] % 2) == (feats[:, 1] % 2)
    label ^= rng.random(n) < 0.05  # a little noise
    lines = [" ".join(["1" if y else "-1"] + [f"{f}:1" for f in row])
             for y, row in zip(label, feats)]
    (folder / name).write_text("\n".join(lines) + "\n")
  write("frappe.validation.libfm", n_valid)
  write("frappe.test.libfm", n_test)


def _config(root, model, epochs=4, batch_size=256):
  cfg_module = importlib.import_module("experiments.configs.ctr_frappe")
  c = cfg_module.get_config(model)
  c.data.dir = str(root)
  c.data.train = "valid-split"
  c.model.dim = 4
  if "hidden" in c.model:  # BARS's dropout and L2 need more than a toy run
    c.model.update(hidden=(16,), dropout=0.0, reg=0.0)
  c.optim.learning_rate = 0.03
  c.train.batch_size = batch_size
  c.train.epochs = epochs
  c.train.steps_per_call = 4
  c.eval.patience = 0
  return c


@pytest.fixture(scope="module")
def frappe_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("ctr")
  _frappe_fixture(root)
  return root


@pytest.mark.parametrize("model,epochs,batch", [("FM", 5, 256),
                                                ("DeepFM", 6, 64)])
def test_train_and_evaluate_learns_a_planted_interaction(frappe_root, tmp_path,
                                                         model, epochs, batch):
  result = ctr.train_and_evaluate(_config(frappe_root, model, epochs, batch),
                                  tmp_path)
  assert result["test"]["ctr/AUC"] > 0.9
  assert result["protocol"] == "ctr" and result["n_train"] == 2400
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["test"] == result["test"]
  # The best checkpoint reloads and reproduces the reported test metrics.
  net, variables, dataset, _ = ctr.load_trained(tmp_path)
  test = dataset.roles["test"]
  logits = net.apply(variables, test.ids, test.values)
  assert metrics.auc(np.asarray(logits), test.labels) == pytest.approx(
      result["test"]["ctr/AUC"], abs=1e-6)
  if model == "DeepFM":  # batch-norm statistics were trained and saved
    stats = variables["batch_stats"]["dnn"]["BatchNorm_0"]["mean"]
    assert np.abs(np.asarray(stats)).max() > 0


def test_linear_model_cannot_rank_the_planted_interaction(frappe_root,
                                                          tmp_path):
  result = ctr.train_and_evaluate(_config(frappe_root, "LR"), tmp_path)
  assert result["test"]["ctr/AUC"] < 0.6


def test_batch_norm_step_moves_stats_without_gradients():
  layout = ctr_datasets.fields.Layout(("a", "b"), (0, 1), (1, 4), (3, 3))
  cfg = _config("/nonexistent", "DeepFM")
  model = ctr.build_model(cfg.model, layout)
  state = ctr.create_state(model, cfg.optim, layout, jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {"ids": jnp.asarray(rng.integers(1, 7, (32, 2)), jnp.int32),
           "values": jnp.ones((32, 2)), "labels": jnp.ones((32,))}
  new, out = jax.jit(ctr.make_bn_step(0.01))(state, batch, jax.random.key(1))
  old_stats = state.params["batch_stats"]["dnn"]["BatchNorm_0"]["mean"]
  new_stats = new.params["batch_stats"]["dnn"]["BatchNorm_0"]["mean"]
  # Running mean = 0.9 * old + 0.1 * batch mean of the first dense layer.
  h = jnp.einsum("bsd,sf->bfd",
                 state.params["params"]["v"]["embedding"][batch["ids"]],
                 jnp.eye(2)).reshape(32, -1)
  dense = state.params["params"]["dnn"]["Dense_0"]
  batch_mean = (h @ dense["kernel"] + dense["bias"][None]).mean(0)
  np.testing.assert_allclose(new_stats, 0.9 * old_stats + 0.1 * batch_mean,
                             rtol=1e-4, atol=1e-7)
  kernel = lambda s: s.params["params"]["dnn"]["Dense_0"]["kernel"]
  assert not np.allclose(kernel(new), kernel(state))  # Adam moved params
  assert np.isfinite(out["loss"]) and out["loss"] >= out["bce"]
  assert int(new.step) == 1
