"""The 'session' family: GRU4Rec and the session baselines.

Legend: S = steps per epoch, B = batch rows, K = extra negatives, C = B + K
output columns, I = n_items + 1.

Training follows the official GRU4Rec (hidasib/GRU4Rec_PyTorch_Official):
session-parallel mini-batches in order of session start time, the same
order every epoch (no reshuffling); each row's hidden state is carried from
step to step (a `SessionState` field, truncated back-propagation of one
step, as there) and zeroed where the row starts a new session.  Rows without
a session left at the end of an epoch are invalid: no loss, and their target
columns are removed from the other rows' negatives (the official batch
shrinks instead).  The output columns of a step are the B in-batch targets
plus K extra items shared by the batch, drawn with replacement with
probability proportional to count^sample_alpha (numpy, per epoch, from
`epoch_rng`).  The loss is summed over valid rows and divided by B.

Losses (`train.loss`): 'ce' (softmax cross-entropy; `train.logq` weights the
logQ correction, with the official's unnormalised Q: count for the in-batch
targets, count^alpha for the extra samples), 'bpr-max' (`train.bpreg`,
`model.elu` as final activation), 'top1-max'.

Protocols: `data.protocol = 'session'` (every next item of a test session,
all items ranked; `session_eval`) or 'sasrec' (user sequences as sessions,
leave-one-out; `session_seq`).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec import session_losses
from jaxrec.data import datasets, sessions as sessions_lib
from jaxrec.models import gru4rec, session_knn
from jaxrec.train import records, session_eval, setup, trainer
from jaxrec.train.step import TrainState


class SessionState(TrainState):
  """A TrainState that also carries the rows' GRU states between steps."""

  hidden: Any  # tuple of (B, H_l) arrays


def build_optimizer(optim_config) -> optax.GradientTransformation:
  """'adagrad-momentum': the official optimiser (Adagrad scaling
  g / sqrt(sum g^2 + eps), then momentum), else `setup.build_optimizer`.

  The official IndexedAdagradM updates only the embedding rows a step
  touches; here momentum also decays into untouched rows (identical when
  momentum is 0)."""
  if optim_config.name != "adagrad-momentum":
    return setup.build_optimizer(optim_config)
  return optax.chain(
      optax.scale_by_rss(initial_accumulator_value=0.0, eps=1e-6),
      optax.trace(decay=optim_config.momentum),
      optax.scale(-optim_config.learning_rate))


def build_model(config, n_items: int) -> gru4rec.GRU4Rec:
  m = config.model
  return gru4rec.GRU4Rec(
      n_items=n_items, layers=tuple(m.layers), embedding=m.embedding,
      constrained=m.constrained, dropout_embed=m.dropout_embed,
      dropout_hidden=m.dropout_hidden)


def create_state(model, tx, batch_size: int, key) -> SessionState:
  hidden = gru4rec.zero_hidden(model.layers, batch_size)
  ids = jnp.ones((batch_size,), jnp.int32)
  params = model.init(key, hidden, ids, ids)["params"]
  return SessionState.create(apply_fn=model.apply, params=params, tx=tx,
                             hidden=hidden)


def column_loss(logits, columns, log_q, train_config, elu: float):
  """(B,) per-row loss of `train.loss` on (B, C) logits."""
  name = train_config.loss
  if name == "ce":
    return session_losses.sampled_softmax_xe(logits, columns, log_q,
                                             train_config.logq)
  if elu:
    logits = jax.nn.elu(logits, elu)
  if name == "bpr-max":
    return session_losses.bpr_max(logits, columns, train_config.bpreg)
  if name == "top1-max":
    return session_losses.top1_max(logits, columns)
  raise ValueError(f"unknown session loss {name!r}; expected 'ce', "
                   "'bpr-max' or 'top1-max'")


def train_step(state: SessionState, batch: dict, key: jax.Array, *,
               log_counts: jax.Array, train_config, elu: float,
               sample_alpha: float):
  """One session-parallel step.

  batch: 'inputs', 'targets' (B,) int32, 'reset', 'valid' (B,) bool,
  'negatives' (K,) int32.
  """
  key = jax.random.fold_in(key, state.step)
  valid = batch["valid"]
  hidden = gru4rec.reset_hidden(state.hidden, batch["reset"])
  cands = jnp.concatenate([batch["targets"], batch["negatives"]])
  columns = jnp.concatenate(
      [valid, jnp.ones(batch["negatives"].shape, bool)])
  log_q = jnp.concatenate([log_counts[batch["targets"]],
                           sample_alpha * log_counts[batch["negatives"]]])
  b = valid.shape[0]

  def objective(params):
    new_hidden, logits = state.apply_fn(
        {"params": params}, hidden, batch["inputs"], cands,
        deterministic=False, rngs={"dropout": key})
    rows = column_loss(logits, columns, log_q, train_config, elu)
    return jnp.sum(jnp.where(valid, rows, 0.0)) / b, new_hidden

  (loss, new_hidden), grads = jax.value_and_grad(objective, has_aux=True)(
      state.params)
  state = state.apply_gradients(grads=grads)
  return state.replace(hidden=jax.lax.stop_gradient(new_hidden)), {
      "loss": loss, "valid_rows": jnp.mean(valid.astype(jnp.float32))}


def negative_weights(counts: np.ndarray, alpha: float) -> np.ndarray:
  """(I,) sampling probabilities count^alpha / sum (0 for padding)."""
  w = counts.astype(np.float64) ** alpha
  w[0] = 0.0
  return w / w.sum()


def epoch_batches_fn(train: sessions_lib.Sessions, batch_size: int,
                     n_sample: int, alpha: float, shuffle: bool = False):
  """`(epoch, rng) -> {name: (S, B) or (S, K)}`: the session-parallel
  schedule (fixed, in stored order, unless `shuffle`) plus fresh shared
  negatives."""
  keys = ("inputs", "targets", "reset", "valid")
  probs = negative_weights(sessions_lib.item_counts(train), alpha)
  if not shuffle:
    sched = sessions_lib.session_parallel(train, batch_size)
    fixed = {k: sched[k] for k in keys}

  def epoch_batches(epoch, rng):
    del epoch
    if shuffle:
      sched = sessions_lib.session_parallel(
          train, batch_size, rng.permutation(train.n_sessions))
      batch = {k: sched[k] for k in keys}
    else:
      batch = dict(fixed)
    n_steps = batch["inputs"].shape[0]
    negs = rng.choice(probs.size, size=(n_steps, n_sample), p=probs)
    return {**batch, "negatives": negs.astype(np.int32)}

  return epoch_batches


def _info(config, split) -> dict:
  return {"protocol": session_eval.PROTOCOL, "dataset": config.data.name,
          "model": config.model.name, **split.stats}


def _baseline(config, workdir: Path, split) -> dict:
  """Popularity or item-kNN: fit in numpy (on train + valid with
  `train.refit`), evaluate like GRU4Rec."""
  train = split.full if split.full is not None else split.train
  t0 = time.perf_counter()
  if config.model.name == "popularity":
    table = jnp.asarray(sessions_lib.item_counts(train), jnp.float32)
    step = session_eval.popularity_step
  else:
    k = config.model
    table = jnp.asarray(session_knn.item_knn(train, k.n_sims, k.lmbd,
                                             k.alpha))
    step = session_eval.table_step
  seconds = time.perf_counter() - t0
  summary, per_event = session_eval.evaluate(
      jax.tree_util.Partial(step, table), (), {
          "valid": split.valid, "test": split.test},
      config.eval.batch_size, config.eval.ks)
  return trainer.finish(workdir, summary, per_event,
                        {**_info(config, split), "train_seconds": seconds})


def train_and_evaluate(config, workdir: str | Path) -> dict:
  workdir = Path(workdir)
  if config.data.get("protocol", "session") == "sasrec":
    from jaxrec.train import session_seq  # noqa: PLC0415 (optional path)
    return session_seq.train_and_evaluate(config, workdir)
  split = sessions_lib.load_prepared(
      datasets.resolve_data_dir(config.data.dir), config.data.name,
      dedupe=config.data.dedupe, refit=bool(config.train.get("refit")))
  info = _info(config, split)
  if config.model.name in ("popularity", "item_knn"):
    records.write_run_header(workdir, config)
    return _baseline(config, workdir, split)
  roles = {"valid": split.valid, "test": split.test}
  if split.full is None:
    return trainer.fit(config, workdir, gru4rec_job(config, split.train,
                                                    roles), info)
  # Phase 1 picks the epoch count on validation; phase 2 retrains on
  # train + valid for that many epochs and is tested once.
  return trainer.fit_with_refit(
      config, workdir,
      lambda: gru4rec_job(config, split.train, roles, ("valid",)),
      lambda cfg: gru4rec_job(cfg, split.full, roles, ("test",)), info)


def gru4rec_job(config, train, roles: dict,
                final_roles: tuple[str, ...] = ("valid", "test"),
                make_evaluate=None) -> trainer.Job:
  """The trainer job for GRU4Rec on `train` sessions, evaluated on `roles`
  under the session protocol, or by `make_evaluate(model)` when given."""
  tc = config.train
  model = build_model(config, train.n_items)
  init_key = jax.random.split(jax.random.key(config.seed))[0]
  template = create_state(model, build_optimizer(config.optim),
                          tc.batch_size, init_key)
  counts = sessions_lib.item_counts(train)
  step = functools.partial(
      train_step, log_counts=jnp.asarray(np.log(np.maximum(counts, 1)),
                                         jnp.float32),
      train_config=tc, elu=config.model.elu, sample_alpha=tc.sample_alpha)
  gru_eval = functools.partial(session_eval.gru_step, model)  # one object:
  layers = tuple(config.model.layers)  # the compiled scan is reused

  def evaluate(params, wanted, final):
    del final
    carry = gru4rec.zero_hidden(layers, config.eval.batch_size)
    return session_eval.evaluate(
        jax.tree_util.Partial(gru_eval, params), carry,
        {r: roles[r] for r in wanted}, config.eval.batch_size,
        config.eval.ks)

  return trainer.Job(
      template=template, loss_fn=None,
      epoch_batches=epoch_batches_fn(
          train, tc.batch_size, tc.n_sample, tc.sample_alpha,
          shuffle=tc.get("session_order", "time") == "shuffle"),
      evaluate=evaluate if make_evaluate is None else make_evaluate(model),
      select=config.eval.select, roles=final_roles, train_step=step)
