"""GRU4Rec on user sequences under the SASRec protocol (family 'session',
`data.protocol = 'sasrec'`).

Legend: U = users, H = hidden size, S = steps, B = rows, N = candidates.

Data, split and frozen evaluation negatives are the sequential family's
(`jaxrec.train.sequential.prepare`: leave-one-out by time, 100 uniform
negatives, all users).  Each user's training sequence is one session, and
GRU4Rec trains on them exactly as on sessions (session-parallel
mini-batches, carried and reset hidden states, shared extra negatives);
with no global clock across users the session order is reshuffled every
epoch (`train.session_order = 'shuffle'`).

Evaluation runs the GRU over each user's whole input sequence (train items;
for test also the validation item) in session-parallel form, keeps the
output after the last item (U, H), and ranks with `jaxrec.evaluate`: the
paper's 100 sampled negatives and full ranking with the history masked.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import evaluate as ev
from jaxrec.data import sequences
from jaxrec.data.sessions import Sessions, session_parallel
from jaxrec.models import gru4rec
from jaxrec.train import sequential, session, trainer


def as_sessions(seqs: sequences.UserSequences, users: np.ndarray,
                n_items: int, dummy_target: bool = False
                ) -> tuple[Sessions, np.ndarray]:
  """The sequences of `users` as Sessions (and the user of each session).

  Without `dummy_target`, users with fewer than 2 items are left out (no
  training pair).  With it, item 0 is appended to every sequence, so that
  the last real item is an input too (evaluation reads the state there).
  """
  lengths = seqs.lengths()[users] + int(dummy_target)
  if not dummy_target:
    users, lengths = users[lengths >= 2], lengths[lengths >= 2]
  offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
  starts = seqs.indptr[users]
  own = lengths - int(dummy_target)  # real items per session
  pos = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
  src = np.repeat(starts, lengths) + pos
  real = pos < np.repeat(own, lengths)
  items = np.zeros(offsets[-1], np.int32)
  items[real] = seqs.items[src[real]]
  return Sessions(items, offsets, n_items), users


@jax.jit
def _final_outputs(step_fn, hidden, table, inputs, reset, slot):
  """Scatters each row's output into table[slot] (slot = U for steps that
  are not a session's last), scanning the schedule."""

  def body(carry, x):
    hidden, table = carry
    inp, rst, slt = x
    hidden, out = step_fn(hidden, inp, rst)
    return (hidden, table.at[slt].set(out)), None

  (_, table), _ = jax.lax.scan(body, (hidden, table), (inputs, reset, slot))
  return table


def _gru_outputs(model, params, hidden, inputs, reset):
  hidden = gru4rec.reset_hidden(hidden, reset)
  return model.apply({"params": params}, hidden, inputs, method="step")


def final_outputs(step_fn, layers, sessions: Sessions, users: np.ndarray,
                  n_users: int, batch_size: int) -> jax.Array:
  """(n_users + 2, H) GRU output after each user's last input item (row u
  for user u; the last row collects discarded writes)."""
  sched = session_parallel(sessions, batch_size)
  dummy = n_users + 1
  sess = np.where(sched["valid"], sched["session"], 0)
  slot = np.where(sched["last"], users[sess], dummy).astype(np.int32)
  table = jnp.zeros((n_users + 2, layers[-1]), jnp.float32)
  return _final_outputs(step_fn, gru4rec.zero_hidden(layers, batch_size),
                        table, sched["inputs"], sched["reset"], slot)


def _score(model, params, table, users, candidates):
  return model.apply({"params": params}, table[users], candidates,
                     method="score")


def make_evaluate(config, sets: dict, inputs: dict, protocol: str,
                  n_users: int):
  """`make(model) -> evaluate(params, roles, final)` for the trainer."""
  ks, layers = tuple(config.eval.ks), tuple(config.model.layers)

  def make(model):
    step = functools.partial(_gru_outputs, model)  # one object per run:
    score = functools.partial(_score, model)       # compiled once

    def evaluate(params, roles, final):
      summary, per_user = {}, {}
      for role in roles:
        s = sets[role]
        sess, users = inputs[role]
        table = final_outputs(jax.tree_util.Partial(step, params), layers,
                              sess, users, n_users, config.eval.batch_size)
        fn = jax.tree_util.Partial(score, params, table)
        results = [(protocol, ev.sampled_ranking(
            fn, s.users, s.candidates(), ks=ks,
            chunk_size=config.eval.sampled_chunk_size))]
        if final or config.eval.valid_full:
          results.append(("full", ev.full_ranking(
              fn, s.users, s.targets, s.exclude_indptr, s.exclude_items,
              s.n_items, chunk_size=config.eval.chunk_size, ks=ks)))
        summary[role], per_user[role] = ev.labelled(results)
      return summary, per_user

    return evaluate

  return make


def train_and_evaluate(config, workdir: str | Path) -> dict:
  workdir = Path(workdir)
  split, sets, protocol, digest = sequential.prepare(config, workdir)
  n_users, n_items = split.train.n_users, split.train.n_items
  config = config.copy_and_resolve_references()
  config.eval.select = config.eval.select.format(protocol=protocol)
  train_seqs = sequences.user_sequences(split.train)
  train, _ = as_sessions(train_seqs, np.arange(1, n_users + 1), n_items)
  known = {"valid": train_seqs,
           "test": sequences.user_sequences(split.train, split.valid)}
  inputs = {role: as_sessions(known[role], sets[role].users, n_items,
                              dummy_target=True) for role in sets}
  job = session.gru4rec_job(
      config, train, {}, make_evaluate=make_evaluate(
          config, sets, inputs, protocol, n_users))
  return trainer.fit(config, workdir, job, info={
      "protocol": protocol, "dataset": config.data.name,
      "model": config.model.name, "negatives_sha256": digest,
      "train_sessions": train.n_sessions, "train_pairs":
          train.n_events - train.n_sessions})
