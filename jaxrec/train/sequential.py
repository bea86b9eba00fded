"""The 'sequential' family: SASRec and BERT4Rec on leave-one-out sequences.

`train_and_evaluate(config, workdir)` loads a sequence dataset, splits it by
time (last item test, second-to-last validation), trains with the shared
loop (`jaxrec.train.trainer`) and evaluates under the paper's sampled
protocol (100 frozen negatives, uniform for SASRec's, popularity for
BERT4Rec's) and under full ranking, for all users.

Legend: S = steps per epoch, B = batch, L = max_len, D = dim, M = masked
positions per batch, N = candidates, U = evaluated users.

Evaluation inputs: for validation the train sequence, for test the train
sequence plus the validation item (SASRec protocol), each its last L items.
Full ranking masks the user's whole history (every train item, and for test
also the validation item, not only the last L) and the padding id.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jaxrec import evaluate as ev
from jaxrec import losses
from jaxrec.data import evalsets, negatives, sequences
from jaxrec.data.datasets import resolve_data_dir
from jaxrec.models.bert4rec import BERT4Rec
from jaxrec.models.sasrec import SASRec
from jaxrec.train import trainer
from jaxrec.train.step import TrainState

MODELS = {"sasrec": SASRec, "bert4rec": BERT4Rec}
PROTOCOLS = {"uniform": "sasrec-sampled-100",
             "popularity": "bert4rec-popularity-100"}


# --- losses: loss(params, batch, key, apply_fn) -> (mean, aux) -------------

def next_item_bce(params, batch, key, apply_fn):
  """SASRec's loss: at every non-padding position, -log s(pos) -
  log(1 - s(neg)) with one sampled negative, averaged over positions."""
  hidden = _encode(params, batch, key, apply_fn)           # (B, L, D)
  pos, neg = batch["pos"], batch["neg"]

  def logits(items):
    return apply_fn({"params": params}, hidden, items, method="item_logits")

  weight = (pos != 0).astype(jnp.float32)
  per_position = (optax.sigmoid_binary_cross_entropy(logits(pos), 1.0)
                  + optax.sigmoid_binary_cross_entropy(logits(neg), 0.0))
  return jnp.sum(per_position * weight) / jnp.maximum(weight.sum(), 1.0), {}


def next_item_softmax(params, batch, key, apply_fn):
  """Cross-entropy of the next item against all items (Klenitskiy &
  Vasilev 2023), averaged over non-padding positions; padding id excluded."""
  hidden = _encode(params, batch, key, apply_fn)           # (B, L, D)
  return _full_softmax_ce(params, apply_fn, hidden.reshape(
      -1, hidden.shape[-1]), batch["pos"].reshape(-1), (
          batch["pos"] != 0).astype(jnp.float32).reshape(-1))


def masked_item_ce(params, batch, key, apply_fn):
  """BERT4Rec's loss: softmax over all items at the M masked positions.

  When the batch carries 'negatives' (K,) (`train.sampled_negatives` > 0,
  not the paper), the softmax runs over the answer and K uniformly drawn
  items shared by the batch instead (uniform proposals need no logQ
  correction), K + 1 columns instead of n_items.
  """
  out = _encode(params, batch, key, apply_fn)              # (B, L, D)
  picked = out.reshape(-1, out.shape[-1])[batch["positions"]]  # (M, D)
  weight = batch["weights"]
  if "negatives" not in batch:
    return _full_softmax_ce(params, apply_fn, picked, batch["labels"], weight)
  logits = apply_fn({"params": params}, picked, batch["labels"],
                    batch["negatives"], method="sampled_logits")
  # Column 0 is the answer; a negative equal to it is no competitor.
  hit = batch["negatives"][None, :] == batch["labels"][:, None]
  logits = logits.at[:, 1:].set(jnp.where(hit, -jnp.inf, logits[:, 1:]))
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.zeros(logits.shape[:1], jnp.int32))
  return jnp.sum(ce * weight) / jnp.maximum(weight.sum(), 1.0), {}


def _encode(params, batch, key, apply_fn):
  """(B, L, D) training-mode outputs of a packed batch."""
  return apply_fn({"params": params}, batch["seq"], train=True,
                  segment=batch["segment"], position=batch["position"],
                  rngs={"dropout": key})


def _full_softmax_ce(params, apply_fn, hidden, labels, weight):
  """Weighted mean over rows of the softmax cross-entropy of hidden (M, D)
  against every id of the model's output layer, the padding id 0 excluded;
  rows of weight 0 (their label may be padding) count nothing."""
  table, bias = apply_fn({"params": params}, method="output_layer")
  bias = bias.at[0].set(-jnp.inf)              # padding is never an answer
  ce = losses.full_softmax(hidden, table, bias, labels.astype(jnp.int32))
  ce = jnp.where(weight > 0, ce, 0.0)
  return jnp.sum(ce * weight) / jnp.maximum(weight.sum(), 1.0), {}


LOSSES = {"bce": next_item_bce, "softmax": next_item_softmax,
          "masked": masked_item_ce}


# --- building blocks ----------------------------------------------------------

def build_model(model_config, n_items: int):
  kwargs = {k: v for k, v in model_config.items() if k != "name"}
  return MODELS[model_config.name](n_items=n_items, **kwargs)


def build_optimizer(optim, total_steps: int) -> optax.GradientTransformation:
  """Adam (SASRec: b2 0.98) or AdamW without decay on norms and biases
  (BERT4Rec), an optional linear decay to 0 after a linear warm-up, and
  optional global-norm clipping."""
  lr = optim.learning_rate
  if optim.schedule == "linear":
    warmup = optim.warmup_steps
    lr = optax.join_schedules([
        optax.linear_schedule(0.0, optim.learning_rate, warmup),
        optax.linear_schedule(optim.learning_rate, 0.0, total_steps - warmup)
    ], [warmup])
  if optim.name == "adam":
    tx = optax.adam(lr, b1=optim.b1, b2=optim.b2)
  elif optim.name == "adamw":
    # BERT's rule: no decay on biases (output_bias too) or norm scales.
    decay_mask = lambda p: jax.tree.map_with_path(
        lambda path, _: not any(w in getattr(k, "key", "") for k in path
                                for w in ("bias", "scale")), p)
    tx = optax.adamw(lr, b1=optim.b1, b2=optim.b2,
                     weight_decay=optim.weight_decay, mask=decay_mask)
  else:
    raise ValueError(f"unknown optimiser {optim.name!r}; expected 'adam' "
                     "or 'adamw'")
  if optim.clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(optim.clip_norm), tx)
  return tx


def _score(model, params, table, users, candidates):
  """`score(params, users (C,), candidates) -> (C, N)` for jaxrec.evaluate:
  the user id selects the row of the device-resident input table."""
  return model.apply({"params": params}, table[users], candidates,
                     method="score")


def make_evaluate(model, tables: dict, sets: dict, protocol: str, config):
  """The Job's `evaluate(params, roles, final)`; per-epoch validation
  (final=False) runs the sampled protocol only, unless eval.valid_full.

  Users are scored in buckets of input width (`config.eval.widths`, then
  max_len): a short history needs only its last columns, and with
  right-aligned positions the scores are the same as at full width.
  """
  score = functools.partial(_score, model)  # one object: one compile cache
  ks = tuple(config.eval.ks)
  max_len = config.model.max_len
  widths = sorted({w for w in config.eval.widths if w < max_len} | {max_len})
  buckets = {}
  for role, table in tables.items():
    length = np.count_nonzero(table, axis=1)[sets[role].users]
    bucket = np.searchsorted(widths, np.minimum(length, max_len))
    buckets[role] = [(w, np.flatnonzero(bucket == b), jnp.asarray(
        table[:, max_len - w:])) for b, w in enumerate(widths)]

  def by_width(params, role, run):
    """Per-user results of `run(score_fn, index)` over the buckets."""
    parts = [(index, run(jax.tree_util.Partial(score, params, t), index))
             for _, index, t in buckets[role] if index.size]
    out = {}
    for name in parts[0][1]:
      first = parts[0][1][name]
      out[name] = np.empty(sets[role].users.size, first.dtype)
      for index, values in parts:
        out[name][index] = values[name]
    return out

  def evaluate(params, roles, final):
    summary, per_user = {}, {}
    for role in roles:
      s = sets[role]
      cands = s.candidates()
      sampled = lambda fn, i: ev.sampled_ranking(
          fn, s.users[i], cands[i], ks=ks,
          chunk_size=config.eval.sampled_chunk_size)
      results = [(protocol, by_width(params, role, sampled))]
      if final or config.eval.valid_full:
        full = lambda fn, i: ev.full_ranking(
            fn, s.users[i], s.targets[i], *_csr_rows(s, i), s.n_items,
            chunk_size=config.eval.chunk_size, ks=ks)
        results.append(("full", by_width(params, role, full)))
      summary[role], per_user[role] = ev.labelled(results)
    return summary, per_user

  return evaluate


def _csr_rows(s, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The exclusion lists of users `index` of an EvalSet, as CSR."""
  lo, hi = s.exclude_indptr[index], s.exclude_indptr[index + 1]
  indptr = np.r_[0, np.cumsum(hi - lo)]
  take = np.repeat(lo - indptr[:-1], hi - lo) + np.arange(indptr[-1])
  return indptr, s.exclude_items[take]


def mask_budget(lengths: np.ndarray, users: np.ndarray, width: int,
                steps: int, rows: int, config, draws: int = 3) -> int:
  """Masked positions per batch (M): the most any step needed in `draws`
  seeded epochs of the training packing and mask counts (a segment of k
  items masks max(1, round(rho * k)), or 1 for the mask-last share), plus
  5% and 64, rounded up to 64.  Every unused slot still costs a full
  softmax row; a step over the budget undoes masks at random (logged).

  Args:
    lengths: (n_users + 1,) segment lengths; users: the users packed;
    width, steps, rows: the packing grid (`sequences.packed_epoch`).
  """
  rng = np.random.default_rng(config.seed)
  most = 0
  for _ in range(draws):
    p = sequences.packed_epoch(users, lengths, width, steps, rows, rng)
    k = np.bincount(p.segment)                        # (segments + 1,)
    step = np.zeros_like(k)
    step[p.segment] = p.step
    n = sequences.mask_counts(
        k, rng.random(k.size) < config.train.mask_last_share,
        config.train.mask_prob)
    n[0] = 0                                          # segment 0: none
    most = max(most, int(np.bincount(step, n, minlength=steps).max()))
  return int(64 * np.ceil((1.05 * most + 64) / 64))


def make_epoch_batches(split, config, model):
  """(The Job's `epoch_batches(epoch, rng)`, steps per epoch).

  An epoch has ceil(users / batch_size) steps, as unpacked batches would;
  each step packs about batch_size users' sequences into R rows of max_len
  tokens (`sequences.packed_epoch`), which on these short-sequence datasets
  cuts the tokens computed per step several-fold.
  """
  max_len, batch_size = config.model.max_len, config.train.batch_size
  train = sequences.user_sequences(split.train)
  everyone = np.arange(split.train.n_users + 1)
  next_item = config.train.loss in ("bce", "softmax")
  # SASRec's segment is a user's inputs (one fewer than the window); the
  # window of L + 1 items holds L inputs and their targets.
  width = max_len + 1 if next_item else max_len
  table = sequences.left_pad(train, everyone, width)
  lengths = np.minimum(train.lengths(), width) - (1 if next_item else 0)
  users = np.flatnonzero(lengths >= 1)
  steps = -(-users.size // batch_size)
  rows = -(-sequences.rows_needed(lengths, users, max_len, config.seed)
           * 102 // 100 // steps)
  logging.info("%d steps per epoch of %d packed rows (about %d users each)",
               steps, rows, batch_size)
  if next_item:
    positives = negatives.PositiveSets.build(
        split.train.users, split.train.items, split.train.n_users,
        split.train.n_items)

    def batches(epoch, rng):
      packing = sequences.packed_epoch(users, lengths, max_len, steps, rows,
                                       rng)
      _note_dropped(epoch, packing)
      return sequences.next_item_batches(table, packing, positives, rng)

    return batches, steps
  budget = config.train.mask_budget or mask_budget(
      lengths, users, max_len, steps, rows, config)
  logging.info("BERT4Rec: %d masked positions per step", budget)

  def masked_batches(epoch, rng):
    packing = sequences.packed_epoch(users, lengths, max_len, steps, rows,
                                     rng)
    _note_dropped(epoch, packing)
    out = sequences.masked_item_batches(
        table, packing, rng, mask_prob=config.train.mask_prob,
        mask_id=model.mask_id, mask_last_share=config.train.mask_last_share,
        budget=budget)
    if config.train.sampled_negatives:
      out["negatives"] = rng.integers(
          1, model.n_items + 1, (steps, config.train.sampled_negatives),
          dtype=np.int32)
    return out

  return masked_batches, steps


def _note_dropped(epoch: int, packing: sequences.Packing) -> None:
  if packing.dropped:
    logging.warning("epoch %d: %d users did not fit the packed grid",
                    epoch + 1, packing.dropped)


def prepare(config, workdir: Path):
  """(split, eval sets, protocol label, negatives sha256)."""
  data = sequences.load(config.data.name, resolve_data_dir(config.data.dir),
                        k_core_min=config.data.k_core)
  split = sequences.leave_one_out(data)
  sampling = config.eval.negative_sampling
  sets, _, digest = evalsets.leave_one_out_sets(
      split, n_negatives=config.eval.n_negatives, sampling=sampling,
      seed=config.data.split_seed,
      cache_dir=config.eval.negatives_dir or Path(workdir) / "eval_negatives")
  protocol = PROTOCOLS[sampling]
  if config.eval.n_negatives != 100:
    protocol = f"sampled-{sampling}-{config.eval.n_negatives}"
  logging.info("%s: %d users, %d items; %d train / %d valid / %d test; %d "
               "users in train only; negatives sha256 %s", data.name,
               data.n_users, data.n_items, len(split.train),
               len(split.valid), len(split.test), split.n_dropped_users,
               digest[:12])
  return split, sets, protocol, digest


def make_job(config, split, sets: dict, protocol: str,
             roles: tuple[str, ...] = ("valid", "test")) -> trainer.Job:
  """The Job of SASRec or BERT4Rec trained on `split.train`."""
  model = build_model(config.model, split.train.n_items)
  batches, steps = make_epoch_batches(split, config, model)
  tx = build_optimizer(config.optim, steps * config.train.epochs)
  seq = jnp.ones((1, config.model.max_len), jnp.int32)
  params = model.init(jax.random.key(config.seed), seq)["params"]
  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  tables = sequences.eval_inputs(split, config.model.max_len)
  return trainer.Job(
      template=state, loss_fn=LOSSES[config.train.loss],
      epoch_batches=batches,
      evaluate=make_evaluate(model, tables, sets, protocol, config),
      select=config.eval.select.replace("{protocol}", protocol), roles=roles)


def train_and_evaluate(config, workdir: str | Path) -> dict:
  """Trains SASRec or BERT4Rec per `config`; returns results.json's dict.

  With `train.refit`, the epoch count E is chosen on validation as usual,
  then a fresh model trains E epochs on each user's sequence up to and
  including the validation item (as BERT4Rec's released code trains), and
  test, whose input is that same sequence, is read once from it.
  """
  workdir = Path(workdir)
  split, sets, protocol, digest = prepare(config, workdir)
  info = {"protocol": protocol, "dataset": split.train.name,
          "split": split.protocol, "negatives_sha256": digest,
          "model": config.model.name}
  if not config.train.get("refit"):
    return trainer.fit(config, workdir, make_job(config, split, sets,
                                                 protocol), info=info)
  return trainer.fit_with_refit(
      config, workdir, lambda: make_job(config, split, sets, protocol),
      lambda cfg: make_job(
          cfg, split.valid_in_train(), sets, protocol, ("test",)), info)
