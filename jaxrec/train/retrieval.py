"""The 'retrieval' family: two-tower models trained with in-batch softmax.

`train_and_evaluate(config, workdir)` trains `jaxrec.models.two_tower`
with the shared loop (`jaxrec.train.trainer`) and evaluates by full ranking
over all items (`jaxrec.evaluate`).

Losses (`config.train.loss`):
- 'softmax': in-batch sampled softmax (InfoNCE over the batch's items,
  `losses.sampled_softmax`), optionally with `train.mixed_negatives` extra
  uniformly drawn items shared by the batch (mixed negative sampling, Yang
  et al., WWW 2020); `train.logq` = 'none', 'counted' (training-set item
  frequencies) or 'streaming' (the frequency estimator of Yi et al., RecSys
  2019, run inside the jitted step and checkpointed with the state);
  `train.remove_accidental_hits`.
- 'triplet': max(0, margin - cos(u, i+) + cos(u, i-)) over
  `train.negatives` uniform negatives per row outside the user's positives.

The logQ term of a column is the log of its expected number of draws per
step: B * p(i) for an in-batch item (p = its share of training
interactions) plus M / n_items from the uniform draws; a constant shift
does not change a softmax, so only ratios matter.

Datasets (`config.data`): 'ncf-ml1m' (leave-one-out; reports full ranking
and the NCF sampled-99 protocol) or 'ml-100k' with `data.split =
'tfrs-80-20'`: the TensorFlow Recommenders tutorials' split, a random 80/20
over all ratings (not per user), seeded by `data.split_seed`; validation
is a further random `data.valid_ratio` of the training ratings.  Its
metrics are per test pair: 'random-80-20-all/HR@100' is TFRS's top-100
accuracy (every movie is a candidate, training items included) and
'full/HR@100' masks the user's training (and for test, validation) items.

Legend: S = steps per epoch, B = batch, M = mixed negatives, I = items.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxrec import evaluate, losses
from jaxrec.data import datasets, evalsets, movielens, negatives, splits
from jaxrec.data.interactions import Interactions
from jaxrec.models import two_tower
from jaxrec.train import records, setup, trainer
from jaxrec.train.step import TrainState

# The label of TFRS's top-K accuracy: all items ranked, none masked.
ALL_ITEMS = "random-80-20-all"


class StreamingState(TrainState):
  """A TrainState that carries Yi et al.'s frequency estimator.

  Attributes:
    last_seen: (I+1,) float32 step at which each item was last in a batch.
    gap: (I+1,) float32 moving average of the steps between sightings.
  """

  last_seen: jax.Array
  gap: jax.Array


def streaming_update(last_seen, gap, items, step, alpha):
  """One step of the estimator: (last_seen, gap) after seeing items (B,).

  gap[i] <- (1 - alpha) gap[i] + alpha (step - last_seen[i]);
  last_seen[i] <- step.  Items are indexed directly (no hashing, so no
  collisions); duplicates in a batch write the same value.
  """
  t = step.astype(jnp.float32)
  gap = gap.at[items].set((1 - alpha) * gap[items]
                          + alpha * (t - last_seen[items]))
  return last_seen.at[items].set(t), gap


def softmax_loss(params, batch, key, apply_fn, *, features, log_q,
                 n_items: int, remove_hits: bool):
  """Mean in-batch sampled softmax of one batch.

  Args:
    batch: 'user', 'item' (B,) int32; optionally 'mixed' (M,) int32.
    log_q: (I+1,) log expected in-batch draws per step, or None.
  """
  del key
  users, items = batch["user"], batch["item"]
  cands = items
  if "mixed" in batch:
    cands = jnp.concatenate([items, batch["mixed"]])
  u, v, tau = apply_fn({"params": params}, users, cands, features,
                       method="embeddings")
  logits = (u @ v.T) / tau                                   # (B, B + M)
  column_log_q = None
  if log_q is not None:
    q = jnp.exp(jax.lax.stop_gradient(log_q))[cands]
    if "mixed" in batch:
      q = q + batch["mixed"].shape[0] / n_items
    column_log_q = jnp.log(q)
  ids = (items, cands) if remove_hits else (None, None)
  per_row = losses.sampled_softmax(logits, jnp.arange(items.shape[0]),
                                   *ids, log_q=column_log_q)
  return per_row.mean(), {"temperature": tau}


def triplet_loss(params, batch, key, apply_fn, *, features, margin: float):
  """Mean triplet hinge of (user, item, neg (B, M)) rows on cosines."""
  del key
  users, items, neg = batch["user"], batch["item"], batch["neg"]
  cands = jnp.concatenate([items[:, None], neg], axis=1)      # (B, 1 + M)
  u, v, tau = apply_fn({"params": params}, users, cands, features,
                       method="embeddings")
  cos = jnp.einsum("bd,bnd->bn", u, v)
  return losses.triplet(cos[:, 0], cos[:, 1:], margin).mean(), {
      "temperature": tau}


def streaming_step(loss_fn, alpha: float):
  """A train step that updates the estimator, then the parameters.

  `loss_fn(params, batch, key, apply_fn, log_q)` gets the estimator's
  log q = -log gap for this step.
  """

  def step(state: StreamingState, batch, key):
    key = jax.random.fold_in(key, state.step)
    last_seen, gap = streaming_update(state.last_seen, state.gap,
                                      batch["item"], state.step, alpha)
    log_q = -jnp.log(gap)
    (loss, aux), grads = jax.value_and_grad(
        lambda p: loss_fn(p, batch, key, state.apply_fn, log_q=log_q),
        has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads).replace(
        last_seen=last_seen, gap=gap)
    return state, {"loss": loss, **aux}

  return step


def tfrs_split(data: Interactions, *, seed: int, test_ratio: float = 0.2,
               valid_ratio: float = 0.0) -> splits.Split:
  """Random split over all ratings (TFRS tutorials), not per user."""
  data = splits.dedupe_latest(data)
  order = np.random.default_rng(seed).permutation(len(data))
  n_test = int(round(len(data) * test_ratio))
  n_valid = int(round((len(data) - n_test) * valid_ratio))
  test, valid, train = np.split(order, [n_test, n_test + n_valid])
  split = splits.Split(data.select(np.sort(train)),
                       data.select(np.sort(valid)),
                       data.select(np.sort(test)), "tfrs-80-20")
  splits.assert_no_leakage(split)
  return split


def _pair_set(role, part: Interactions, known: list[Interactions]):
  """An EvalSet with one row per held-out pair (no sampled negatives)."""
  ref = known[0]
  pos = negatives.PositiveSets.build(
      np.concatenate([k.users for k in known]),
      np.concatenate([k.items for k in known]), ref.n_users, ref.n_items)
  counts = pos.counts()[part.users]
  return evalsets.EvalSet(role, ref.n_items, part.users, part.items,
                          np.r_[0, np.cumsum(counts)],
                          pos.rows_of(part.users)[1],
                          np.zeros((len(part), 0), np.int32))


def load(config, workdir):
  """(split, eval sets, protocol label, features) for `config.data`."""
  dc = config.data
  root = datasets.resolve_data_dir(dc.dir)
  if dc.name == "ncf-ml1m":
    split, test_neg = datasets.load_split(dc, dc.split_seed)
    sets, protocol, _ = evalsets.leave_one_out_sets(
        split, n_negatives=config.eval.n_negatives, sampling="uniform",
        seed=dc.split_seed,
        cache_dir=config.eval.negatives_dir or f"{workdir}/eval_negatives",
        test_negatives=test_neg)
    users, items = movielens.load_ml1m_users(root), movielens.load_ml1m_movies(
        root)
  elif dc.name == "ml-100k" and dc.split == "tfrs-80-20":
    split = tfrs_split(datasets.load("ml-100k", dc.dir), seed=dc.split_seed,
                       test_ratio=dc.test_ratio, valid_ratio=dc.valid_ratio)
    sets = {"test": _pair_set("test", split.test, [split.train, split.valid])}
    if len(split.valid):
      sets["valid"] = _pair_set("valid", split.valid, [split.train])
    protocol = ALL_ITEMS
    users, items = (movielens.load_ml100k_users(root),
                    movielens.load_ml100k_items(root))
  else:
    raise ValueError(f"retrieval runs on 'ncf-ml1m' or 'ml-100k' with "
                     f"split 'tfrs-80-20'; got {dc.name!r} / {dc.split!r}")
  features = two_tower.movielens_features(users, items.align(split.train))
  return split, sets, protocol, features


def _evaluate_fn(score, sets, protocol, features, config):
  ks = tuple(config.eval.ks)

  def run(params, roles, final):
    fn = jax.tree_util.Partial(score, (params, features))
    summary, per_user = {}, {}
    for role in roles:
      s = sets[role]
      out = {}
      variants = [("full", (s.exclude_indptr, s.exclude_items))]
      if protocol == ALL_ITEMS:  # TFRS ranks training items too
        variants.append((ALL_ITEMS, (np.zeros_like(s.exclude_indptr),
                                      s.exclude_items[:0])))
      for label, excl in variants:
        out[label] = evaluate.full_ranking(
            fn, s.users, s.targets, *excl, s.n_items,
            chunk_size=config.eval.chunk_size, ks=ks)
      if final and s.negatives.shape[1]:
        out[protocol] = evaluate.sampled_ranking(fn, s.users, s.candidates(),
                                                 ks=ks)
      summary[role], per_user[role] = evaluate.labelled(list(out.items()))
    return summary, per_user

  return run


def _epoch_fn(train: Interactions, config, positives):
  tc = config.train
  n_items = train.n_items

  def batches(epoch, rng):
    del epoch
    n = len(train)
    steps = n // tc.batch_size
    keep = rng.permutation(n)[:steps * tc.batch_size]
    out = {"user": train.users[keep].reshape(steps, tc.batch_size),
           "item": train.items[keep].reshape(steps, tc.batch_size)}
    if tc.loss == "triplet":
      users = out["user"].reshape(-1).repeat(tc.negatives)
      neg = negatives.sample_uniform(users, positives, rng)
      out["neg"] = neg.reshape(steps, tc.batch_size, tc.negatives)
    elif tc.mixed_negatives:
      out["mixed"] = rng.integers(1, n_items + 1,
                                  (steps, tc.mixed_negatives), np.int32)
    return out

  return batches


def build_model(config, n_users, n_items, features):
  mc = config.model
  if not mc.features:
    features = two_tower.no_features(n_users, n_items)
  user_vocab, item_vocab, n_multi = features.vocab
  model = two_tower.TwoTower(
      n_users=n_users, n_items=n_items, user_vocab=user_vocab,
      item_vocab=item_vocab, n_multi=n_multi, dim=mc.dim, id_dim=mc.id_dim,
      feature_dim=mc.feature_dim, hidden=tuple(mc.hidden),
      init_temperature=mc.init_temperature,
      learn_temperature=mc.learn_temperature,
      normalize=mc.get("normalize", True))
  return model, jax.tree.map(jnp.asarray, features)


def train_and_evaluate(config, workdir) -> dict:
  """Trains a two-tower model; returns (and writes) its results."""
  split, sets, protocol, features = load(config, workdir)
  train, tc = split.train, config.train
  model, features = build_model(config, train.n_users, train.n_items,
                                features)
  ids = jnp.ones((1,), jnp.int32)
  key = jax.random.split(jax.random.key(config.seed))[0]
  params = model.init(key, ids, ids, features)["params"]
  tx = setup.build_optimizer(config.optim)
  counts = train.item_counts().astype(np.float64)
  log_q = jnp.asarray(np.log(np.maximum(counts, 1) / counts.sum()
                             * tc.batch_size), jnp.float32)
  step = None
  if tc.loss == "triplet":
    loss = functools.partial(triplet_loss, features=features,
                             margin=tc.margin)
  elif tc.loss == "softmax":
    loss = functools.partial(
        softmax_loss, features=features, n_items=train.n_items,
        remove_hits=tc.remove_accidental_hits,
        log_q=log_q if tc.logq == "counted" else None)
    if tc.logq == "streaming":
      step = streaming_step(functools.partial(loss.func, **{
          k: v for k, v in loss.keywords.items() if k != "log_q"}),
                            tc.streaming_alpha)
      loss = None
    elif tc.logq not in ("none", "counted"):
      raise ValueError(f"unknown train.logq {tc.logq!r}; expected 'none', "
                       "'counted' or 'streaming'")
  else:
    raise ValueError(f"unknown train.loss {tc.loss!r} for retrieval; "
                     "expected 'softmax' or 'triplet'")
  if step is None:
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  else:
    # Prior: every item once per n_items / B steps (uniform popularity).
    prior = np.full(train.n_items + 1, train.n_items / tc.batch_size)
    state = StreamingState.create(
        apply_fn=model.apply, params=params, tx=tx,
        last_seen=jnp.zeros(train.n_items + 1, jnp.float32),
        gap=jnp.asarray(prior, jnp.float32))

  def score(pf, users, candidates):
    p, f = pf
    return model.apply({"params": p}, users, candidates, f, method="score")

  positives = negatives.PositiveSets.build(train.users, train.items,
                                           train.n_users, train.n_items)
  roles = tuple(r for r in ("valid", "test") if r in sets)
  job = trainer.Job(
      template=state, loss_fn=loss,
      epoch_batches=_epoch_fn(train, config, positives),
      evaluate=_evaluate_fn(score, sets, protocol, features, config),
      select=config.eval.select, roles=roles, train_step=step)
  logging.info("%s %s: %d train / %d valid / %d test", train.name,
               protocol, len(train), len(split.valid), len(split.test))
  return trainer.fit(config, workdir, job, info={
      "protocol": protocol, "dataset": train.name, "split": split.protocol})


def restore_run(workdir):
  """A finished run's (config, split, eval sets, model, best params,
  features), rebuilt from its config.json and best checkpoint."""
  from pathlib import Path
  import ml_collections
  from jaxrec import checkpoint
  workdir = Path(workdir)
  config = ml_collections.ConfigDict(
      records.read_json(workdir / "config.json"))
  split, sets, _, features = load(config, workdir)
  train = split.train
  model, features = build_model(config, train.n_users, train.n_items,
                                features)
  ids = jnp.ones((1,), jnp.int32)
  params = model.init(jax.random.key(0), ids, ids, features)["params"]
  tx = setup.build_optimizer(config.optim)
  if config.train.logq == "streaming":
    n = train.n_items + 1
    template = StreamingState.create(
        apply_fn=model.apply, params=params, tx=tx,
        last_seen=jnp.zeros(n, jnp.float32), gap=jnp.zeros(n, jnp.float32))
  else:
    template = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  with checkpoint.Checkpointer(workdir / "checkpoints") as ckpt:
    params = ckpt.restore(template, which="best")[0].params
  return config, split, sets, model, params, features
