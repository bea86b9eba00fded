"""Builds what a run needs from its config: model, optimiser, state."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxrec import checkpoint
from jaxrec.models import ncf
from jaxrec.models.mf import MF
from jaxrec.train import records
from jaxrec.train.step import TrainState

MODELS = {"mf": MF, "gmf": ncf.GMF, "mlp": ncf.MLP, "neumf": ncf.NeuMF}
_NOT_KWARGS = ("name", "pretrained")


def build_model(model_config, n_users: int, n_items: int):
  """The Flax module named by `model_config.name`, other fields as kwargs."""
  kwargs = {k: v for k, v in model_config.items() if k not in _NOT_KWARGS}
  try:
    cls = MODELS[model_config.name]
  except KeyError:
    raise ValueError(f"unknown model {model_config.name!r}; expected one of "
                     f"{sorted(MODELS)} or 'popularity'") from None
  return cls(n_users=n_users, n_items=n_items, **kwargs)


def build_optimizer(optim_config) -> optax.GradientTransformation:
  """Adam, AdamW, Adagrad or SGD with optional global-norm clipping."""
  name, lr = optim_config.name, optim_config.learning_rate
  if name == "adam":
    tx = optax.adam(lr)
  elif name == "adamw":
    tx = optax.adamw(lr, weight_decay=optim_config.weight_decay)
  elif name == "adagrad":
    tx = optax.adagrad(lr)
  elif name == "sgd":
    tx = optax.sgd(lr)
  else:
    raise ValueError(f"unknown optimiser {name!r}")
  if optim_config.get("clip_norm", 0.0):
    tx = optax.chain(optax.clip_by_global_norm(optim_config.clip_norm), tx)
  return tx


def create_state(model, tx, key: jax.Array) -> TrainState:
  """A fresh TrainState; init sees one dummy (user, item) pair."""
  ids = jnp.ones((1,), jnp.int32)
  params = model.init(key, ids, ids)["params"]
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def score_fn(model):
  """`score(params, users (B,), candidates) -> (B, N)` for evaluation."""

  def score(params, users, candidates):
    return model.apply({"params": params}, users, candidates, method="score")

  return score


def pretrained_params(workdir: str | Path, n_users: int, n_items: int):
  """The best-by-validation parameters of a finished run in `workdir`, or
  its last ones when it had no validation (a refit's `<run>/refit`).

  The run's own config.json rebuilds its model and optimiser, so the
  checkpoint restores into exactly the structure it was saved with.
  """
  workdir = Path(workdir)
  config = ml_collections.ConfigDict(
      records.read_json(workdir / "config.json"))
  template = create_state(build_model(config.model, n_users, n_items),
                          build_optimizer(config.optim), jax.random.key(0))
  with checkpoint.Checkpointer(workdir / "checkpoints") as ckpt:
    which = "best" if ckpt.steps("best") else "last"
    state, _ = ckpt.restore(template, which=which)
  return state.params


def init_from_pretrained(state: TrainState, pretrained, n_users: int,
                         n_items: int) -> TrainState:
  """NeuMF initialised from GMF and MLP runs (`pretrained.gmf`, `.mlp`
  workdirs; output layer mixed with `pretrained.alpha`)."""
  params = ncf.neumf_from_pretrained(
      pretrained_params(pretrained.gmf, n_users, n_items),
      pretrained_params(pretrained.mlp, n_users, n_items),
      alpha=pretrained.alpha)
  return state.replace(params=params, opt_state=state.tx.init(params))
