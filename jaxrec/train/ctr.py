"""The CTR family: LR, FM, FFM, DeepFM and Wide&Deep under the CTR protocol.

Protocol (SPEC "CTR protocol"): fixed train/valid/test split; binary
cross-entropy on clicks plus an L2 penalty (reg / 2) * ||E||^2 on every
embedding table, as FuxiCTR/BARS add it to each batch's loss; the best epoch
by validation AUC (early stopping on it); AUC and log loss once on the full
test set.

The trainer's params are the model's whole variable dict ({'params'} plus
{'batch_stats'} for models with batch norm), so evaluation and checkpoints
see the batch-norm statistics too.  Batch-norm statistics get no gradient
(their optimiser branch is `optax.set_to_zero`); a model with batch norm
trains through a custom step on the 'single' launcher, the others through
`loss_fn` on any launcher.

  python -m experiments.main --config=experiments/configs/ctr_frappe.py \
      --workdir=/work/runs/ctr/deepfm
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxrec import checkpoint, metrics
from jaxrec.data import ctr_datasets, fields
from jaxrec.models import deepfm, fm
from jaxrec.train import records, trainer
from jaxrec.train.setup import build_optimizer
from jaxrec.train.step import TrainState

MODELS = {"lr": fm.LR, "fm": fm.FM, "ffm": fm.FFM, "deepfm": deepfm.DeepFM,
          "widedeep": deepfm.WideDeep}
PROTOCOL = "ctr"


def load_data(config) -> tuple[ctr_datasets.CTRDataset, object]:
  """The dataset named by `config.data.name` (and ML-1M's side features)."""
  name = config.data.name
  if name == "frappe_x1":
    return ctr_datasets.load_frappe_x1(
        config.data.dir or None, train=config.data.get("train", "rebuilt"),
        cache_dir=config.data.get("cache_dir") or None), None
  if name == "ml-1m-ctr":
    return ctr_datasets.load_ml1m_ctr(config.data.dir or None,
                                      config.data.split_seed)
  raise ValueError(f"unknown CTR dataset {name!r}; expected 'frappe_x1' or "
                   "'ml-1m-ctr'")


def build_model(model_config, layout: fields.Layout):
  """The module named by `model_config.name`; other fields are kwargs."""
  kwargs = {k: (tuple(v) if isinstance(v, (list, tuple)) else v)
            for k, v in model_config.items() if k not in ("name", "reg")}
  try:
    cls = MODELS[model_config.name]
  except KeyError:
    raise ValueError(f"unknown CTR model {model_config.name!r}; expected one "
                     f"of {sorted(MODELS)}") from None
  return cls(n_features=layout.n_features, slot_fields=layout.slot_fields,
             **kwargs)


def create_state(model, optim_config, layout: fields.Layout,
                 key: jax.Array) -> TrainState:
  """Fresh state whose params are the full variable dict."""
  ids = jnp.ones((2, len(layout.slot_fields)), jnp.int32)
  variables = model.init(key, ids, jnp.ones(ids.shape, jnp.float32))
  variables = jax.tree.map(jnp.asarray, dict(variables))
  labels = {k: jax.tree.map(lambda _, k=k: k, v) for k, v in variables.items()}
  tx = optax.multi_transform(
      {"params": build_optimizer(optim_config),
       "batch_stats": optax.set_to_zero()}, labels)
  return TrainState.create(apply_fn=model.apply, params=variables, tx=tx)


def embedding_l2(params, reg: float) -> jax.Array:
  """(reg / 2) * sum of squares of every 'embedding' table."""
  tables = [x for path, x in jax.tree_util.tree_leaves_with_path(params)
            if getattr(path[-1], "key", None) == "embedding"]
  return 0.5 * reg * sum(jnp.sum(t ** 2) for t in tables)


def _objective(apply_fn, params, stats, batch, key, reg):
  """Mean BCE + L2 at `params` (the 'params' collection); new batch stats."""
  variables = {"params": params}
  if stats is not None:
    variables["batch_stats"] = stats
    logits, updates = apply_fn(variables, batch["ids"], batch["values"],
                               train=True, rngs={"dropout": key},
                               mutable=["batch_stats"])
    stats = updates["batch_stats"]
  else:
    logits = apply_fn(variables, batch["ids"], batch["values"], train=True,
                      rngs={"dropout": key})
  bce = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, batch["labels"]))
  return bce + embedding_l2(params, reg), (bce, stats)


def make_loss(reg: float):
  """`loss(params, batch, key, apply_fn)` for models without batch norm."""

  def loss(variables, batch, key, apply_fn):
    total, (bce, _) = _objective(apply_fn, variables["params"], None, batch,
                                 key, reg)
    return total, {"bce": bce}

  return loss


def make_bn_step(reg: float):
  """`step(state, batch, key)` that also carries the batch-norm stats."""

  def step(state: TrainState, batch, key):
    key = jax.random.fold_in(key, state.step)
    stats = state.params["batch_stats"]
    (total, (bce, stats)), grads = jax.value_and_grad(
        lambda p: _objective(state.apply_fn, p, stats, batch, key, reg),
        has_aux=True)(state.params["params"])
    grads = {"params": grads,
             "batch_stats": jax.tree.map(jnp.zeros_like, stats)}
    state = state.apply_gradients(grads=grads)
    state = state.replace(params={**state.params, "batch_stats": stats})
    return state, {"loss": total, "bce": bce}

  return step


def make_predict(model, chunk: int = 8192):
  """`predict(variables, data) -> (N,) float64 logits` in chunks of one
  shape (the last one padded with id 0), so one compilation serves all."""
  apply = jax.jit(lambda v, ids, values: model.apply(v, ids, values))

  def predict(variables, data: fields.CTRData) -> np.ndarray:
    n = len(data)
    pad = lambda a: np.pad(a, ((0, -n % chunk), (0, 0)))
    ids, values = pad(data.ids), pad(data.values)
    out = [apply(variables, ids[lo:lo + chunk], values[lo:lo + chunk])
           for lo in range(0, n, chunk)]
    return np.concatenate([np.asarray(x, np.float64) for x in out])[:n]

  return predict


def evaluate_roles(predict, variables, roles_data: dict, roles) -> tuple:
  """({role: {'ctr/AUC', 'ctr/logloss'}}, {role: {'logloss': (N,)}})."""
  summary, per_example = {}, {}
  for role in roles:
    data = roles_data[role]
    logits = predict(variables, data)
    losses = metrics.log_loss_per_example(logits, data.labels)
    summary[role] = {f"{PROTOCOL}/AUC": metrics.auc(logits, data.labels),
                     f"{PROTOCOL}/logloss": float(losses.mean())}
    per_example[role] = {"logloss": losses}
  return summary, per_example


def train_and_evaluate(config, workdir) -> dict:
  dataset, _ = load_data(config)
  layout = dataset.layout
  model = build_model(config.model, layout)
  key = jax.random.split(jax.random.key(config.seed))[0]
  template = create_state(model, config.optim, layout, key)
  reg = config.model.get("reg", 0.0)
  has_bn = "batch_stats" in template.params
  train = dataset.roles["train"]
  predict = make_predict(model)
  job = trainer.Job(
      template=template,
      loss_fn=None if has_bn else make_loss(reg),
      train_step=make_bn_step(reg) if has_bn else None,
      epoch_batches=lambda epoch, rng: fields.epoch_batches(
          train, config.train.batch_size, rng),
      evaluate=lambda params, roles, final: evaluate_roles(
          predict, params, dataset.roles, roles),
      select=f"{PROTOCOL}/AUC")
  info = {"protocol": PROTOCOL, "dataset": dataset.name,
          "n_features": layout.n_features,
          **{f"n_{role}": len(d) for role, d in dataset.roles.items()}}
  return trainer.fit(config, workdir, job, info)


def load_trained(workdir, data_dir=None):
  """A finished CTR run's model, best-by-validation variables and data.

  Rebuilds the run's dataset (the same vocabularies: they are a function of
  the data files and the split seed) from its config.json, then restores the
  best checkpoint.  Returns (model, variables, dataset, extra) where extra
  is `ctr_datasets.ML1MFeatures` for ML-1M (use its `encode_pairs`) and None
  otherwise; score pairs with `model.apply(variables, ids, values)`.
  """
  workdir = Path(workdir)
  config = ml_collections.ConfigDict(
      records.read_json(workdir / "config.json"))
  if data_dir is not None:
    config.data.dir = str(data_dir)
  dataset, extra = load_data(config)
  model = build_model(config.model, dataset.layout)
  template = create_state(model, config.optim, dataset.layout,
                          jax.random.key(0))
  with checkpoint.Checkpointer(workdir / "checkpoints") as ckpt:
    state, _ = ckpt.restore(template, which="best")
  return model, state.params, dataset, extra
