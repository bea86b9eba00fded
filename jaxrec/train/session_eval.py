"""Session-protocol evaluation: every next item of a test session is a target.

Legend: S = schedule steps, B = rows, I = n_items + 1, E = test events
(targets), H = hidden size.

The test sessions are laid out by the same session-parallel schedule as
training (`jaxrec.data.sessions.session_parallel`); one `lax.scan` runs the
model over it, carrying its state (the GRU's hidden state, reset where a
session starts), scores all items at every step and ranks the step's target
(the next item; the input item is only a competitor like any other) with
pessimistic ties among items 1..n_items, as the official GRU4Rec evaluation
does (its 'conservative' mode).  Only the (S, B) ranks leave the device.

A step function has the signature
`step(carry, inputs (B,), reset (B,)) -> (carry, scores (B, I))`; wrap
parameters with `jax.tree_util.Partial` so that new parameters reuse the
compiled scan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import metrics
from jaxrec.data.sessions import Sessions, session_parallel
from jaxrec.models import gru4rec, session_knn
from jaxrec.models.popularity import popularity_score_fn

StepFn = Callable[..., tuple]
PROTOCOL = "session-full"


@jax.jit
def scan_ranks(step_fn: StepFn, carry, inputs: jax.Array, targets: jax.Array,
               reset: jax.Array) -> jax.Array:
  """(S, B) int32 rank of each step's target among items 1..n_items."""

  def body(carry, x):
    inp, tgt, rst = x
    carry, scores = step_fn(carry, inp, rst)
    exclude = jnp.zeros(scores.shape, bool).at[:, 0].set(True)
    return carry, metrics.target_rank(scores, tgt, exclude)

  _, ranks = jax.lax.scan(body, carry, (inputs, targets, reset))
  return ranks


def event_ranks(step_fn: StepFn, carry, sessions: Sessions,
                batch_size: int) -> np.ndarray:
  """(E,) rank of every target, in (session, position) order."""
  sched = session_parallel(sessions, batch_size)
  ranks = np.asarray(scan_ranks(
      jax.tree_util.Partial(step_fn) if not isinstance(
          step_fn, jax.tree_util.Partial) else step_fn,
      carry, sched["inputs"], sched["targets"], sched["reset"]))
  valid = sched["valid"]
  steps = np.broadcast_to(np.arange(valid.shape[0])[:, None], valid.shape)
  order = np.lexsort((steps[valid], sched["session"][valid]))
  return ranks[valid][order]


def rank_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
  """Per-event 'Recall@k' (= HR@k: one target per event) and 'MRR@k'."""
  r = jnp.asarray(ranks, jnp.int32)
  out = {}
  for k in ks:
    out[f"Recall@{k}"] = np.asarray(metrics.hit_rate(r, k))
    out[f"MRR@{k}"] = np.asarray(metrics.mrr(r, k))
  return out


def evaluate(step_fn: StepFn, carry, roles: dict[str, Sessions],
             batch_size: int, ks: Sequence[int]) -> tuple[dict, dict]:
  """({role: {'session-full/<metric>': mean}},
  {role: {'session-full/<metric>': (E,) per target event}})."""
  summary, per_event = {}, {}
  for role, sessions in roles.items():
    values = rank_metrics(event_ranks(step_fn, carry, sessions, batch_size),
                          ks)
    per_event[role] = {f"{PROTOCOL}/{k}": v for k, v in values.items()}
    summary[role] = {f"{PROTOCOL}/{k}": float(np.mean(v, dtype=np.float64))
                     for k, v in values.items()}
  return summary, per_event


# Step functions (carry, inputs, reset) -> (carry, scores (B, I)).

def gru_step(model: gru4rec.GRU4Rec, params, hidden, inputs, reset):
  """One GRU4Rec step scoring every item; carry = the hidden state."""
  hidden = gru4rec.reset_hidden(hidden, reset)
  cands = jnp.arange(model.n_items + 1)
  return model.apply({"params": params}, hidden, inputs, cands)


def table_step(table, carry, inputs, reset):
  """Item-kNN: the input item's similarity row; no state."""
  del reset
  return carry, session_knn.table_scores(table, inputs)


def popularity_step(counts, carry, inputs, reset):
  """Most popular: training counts, whatever the session."""
  del reset
  n = counts.shape[0]
  return carry, popularity_score_fn(counts)(inputs, jnp.arange(n))
