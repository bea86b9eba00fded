"""Builds what a run needs from its config: model, optimiser, state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxrec.models.mf import MF
from jaxrec.train.step import TrainState

MODELS = {"mf": MF}


def build_model(model_config, n_users: int, n_items: int):
  """The Flax module named by `model_config.name`, other fields as kwargs."""
  kwargs = {k: v for k, v in model_config.items() if k != "name"}
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
