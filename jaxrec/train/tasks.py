"""Task types: the loss of one batch and the batches of one epoch.

A task pairs a `loss(params, batch, key, apply_fn) -> (loss, aux)` with an
epoch builder that turns the training log into shuffled numpy batches
stacked as (steps, batch) with no Python loop per example.

Legend: E = training interactions, S = steps per epoch, B = batch size.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np

from jaxrec import losses
from jaxrec.data import negatives
from jaxrec.data.interactions import Interactions


def pointwise_loss(params, batch, key, apply_fn, l2: float = 0.0):
  """Mean BCE of (user, item, label) rows; label 1 = observed.

  `l2` > 0 adds l2 * ||embeddings of the row||^2 per row (the model's
  `l2_penalty`), the per-example regularisation of Rendle et al. (2020).
  """
  del key
  logits = apply_fn({"params": params}, batch["user"], batch["item"])
  per_row = losses.pointwise_bce(logits, batch["label"])
  return _plus_l2(per_row, l2, params, apply_fn, batch["user"],
                  batch["item"]).mean(), {}


def pairwise_loss(params, batch, key, apply_fn, l2: float = 0.0):
  """Mean BPR of (user, positive, negative) rows.

  `l2` > 0 adds l2 * (||u||^2 + ||i||^2 + ||j||^2) per row, the per-example
  regularisation of BPR's LearnBPR (Rendle et al., UAI 2009).
  """
  del key
  items = jnp.stack([batch["pos"], batch["neg"]], axis=1)     # (B, 2)
  logits = apply_fn({"params": params}, batch["user"], items, method="score")
  per_row = losses.bpr(logits[:, 0], logits[:, 1])
  return _plus_l2(per_row, l2, params, apply_fn, batch["user"],
                  items).mean(), {}


def _plus_l2(per_row, l2, params, apply_fn, users, items):
  """per_row (B,) plus l2 * the model's `l2_penalty` of each row's
  embeddings (users (B,), items (B,) or (B, K)); unchanged when l2 is 0."""
  if not l2:
    return per_row
  return per_row + l2 * apply_fn({"params": params}, users, items,
                                 method="l2_penalty")


@dataclasses.dataclass(frozen=True)
class NegativeSampler:
  """Draws training negatives for users, excluding their positives unless
  `exclude_positives` is False.

  Attributes:
    positives: every user's training positives.
    weights: (n_items + 1,) sampling weights, or None for uniform.
    exclude_positives: False draws uniformly from every item
      (negatives.sample_any); needs weights None.
  """

  positives: negatives.PositiveSets
  weights: np.ndarray | None = None
  exclude_positives: bool = True

  def __post_init__(self):
    if not self.exclude_positives and self.weights is not None:
      raise ValueError("exclude_positives=False samples uniformly; it takes "
                       "no weights")

  def __call__(self, users: np.ndarray, rng: np.random.Generator):
    if not self.exclude_positives:
      return negatives.sample_any(users, self.positives.n_items, rng)
    if self.weights is None:
      return negatives.sample_uniform(users, self.positives, rng)
    return negatives.sample_weighted(users, self.positives, self.weights, rng)


def pointwise_epoch(train: Interactions, sample: NegativeSampler, n_neg: int,
                    batch_size: int, rng: np.random.Generator) -> dict:
  """Every positive once plus `n_neg` negatives each, shuffled.

  Returns leaves of shape (S, B): 'user', 'item' int32, 'label' float32;
  the last partial batch is dropped (a different part every epoch).
  """
  users = np.repeat(train.users, n_neg)
  negs = sample(users, rng)
  rows = {
      "user": np.concatenate([train.users, users]),
      "item": np.concatenate([train.items, negs]),
      "label": np.concatenate([np.ones(len(train), np.float32),
                               np.zeros(users.size, np.float32)]),
  }
  return _shuffle_into_batches(rows, batch_size, rng)


def pairwise_epoch(train: Interactions, sample: NegativeSampler, n_neg: int,
                   batch_size: int, rng: np.random.Generator) -> dict:
  """Every positive `n_neg` times, each with its own negative, shuffled.

  Returns leaves of shape (S, B): 'user', 'pos', 'neg' int32.
  """
  users = np.repeat(train.users, n_neg)
  rows = {"user": users, "pos": np.repeat(train.items, n_neg),
          "neg": sample(users, rng)}
  return _shuffle_into_batches(rows, batch_size, rng)


def _shuffle_into_batches(rows: dict, batch_size: int,
                          rng: np.random.Generator) -> dict:
  n = next(iter(rows.values())).shape[0]
  steps = n // batch_size
  if steps == 0:
    raise ValueError(f"an epoch has {n} examples, fewer than one batch of "
                     f"{batch_size}")
  keep = rng.permutation(n)[:steps * batch_size]
  return {k: v[keep].reshape(steps, batch_size) for k, v in rows.items()}


@dataclasses.dataclass(frozen=True)
class Task:
  loss: Callable
  epoch: Callable


TASKS = {"bce": Task(pointwise_loss, pointwise_epoch),
         "bpr": Task(pairwise_loss, pairwise_epoch)}
