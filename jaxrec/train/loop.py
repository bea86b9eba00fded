"""The 'ranking' family (MF, NCF, popularity): `train_and_evaluate`.

Builds a `trainer.Job` from a (user, item) split and its evaluation sets;
the shared loop in `jaxrec.train.trainer` does the rest.  With
`train.refit`, a second run retrains on train + validation for the
best-by-validation number of epochs, and test is read from it alone.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
from absl import logging

from jaxrec import evaluate
from jaxrec.data import datasets, evalsets, negatives, splits
from jaxrec.models.popularity import popularity_score_fn
from jaxrec.train import records, row_sparse, setup, tasks, trainer


def prepare_data(config, workdir: Path):
  """(split, evaluation sets by role, protocol name, negatives sha256): what
  every run of `config` is evaluated on.  Sampled validation negatives are
  cached in `config.eval.negatives_dir`, else in `workdir`/eval_negatives."""
  split, test_negatives = datasets.load_split(config.data,
                                              config.data.split_seed)
  if split.protocol == "ratio":
    sets, protocol = evalsets.ratio_sets(split, config.data.test_ratio)
    digest = "none (no sampled negatives)"
  else:
    neg_dir = config.eval.negatives_dir or workdir / "eval_negatives"
    sets, protocol, digest = evalsets.leave_one_out_sets(
        split, n_negatives=config.eval.n_negatives,
        sampling=config.eval.negative_sampling,
        seed=config.data.split_seed, cache_dir=neg_dir,
        test_negatives=test_negatives)
  logging.info("%s %s: %d train / %d valid / %d test; %d users kept in train "
               "only (fewer than 3 interactions); negatives sha256 %s",
               split.train.name, split.protocol, len(split.train),
               len(split.valid), len(split.test), split.n_dropped_users,
               digest[:12])
  return split, sets, protocol, digest


def _evaluate(score, params, sets, roles, protocol, config, full=True):
  """{role: {'full/HR@10': ..., 'sampled-.../HR@10': ...}} and per-user.

  `full=False` skips full ranking (for per-epoch validation of models whose
  full ranking is costly, e.g. NeuMF scoring every user-item pair).
  """
  fn = jax.tree_util.Partial(score, params)
  ks = tuple(config.eval.ks)
  summary, per_user = {}, {}
  for role in roles:
    s = sets[role]
    if isinstance(s, evalsets.RelevanceSet):
      results = [(protocol, evaluate.full_ranking_multi(
          fn, s.users, s.relevant_indptr, s.relevant_items,
          s.exclude_indptr, s.exclude_items, s.n_items,
          chunk_size=config.eval.chunk_size, ks=ks))]
      full = False
    else:
      results = [(protocol, evaluate.sampled_ranking(fn, s.users,
                                                     s.candidates(), ks=ks))]
    if full:
      results.insert(0, ("full", evaluate.full_ranking(
          fn, s.users, s.targets, s.exclude_indptr, s.exclude_items,
          s.n_items, chunk_size=config.eval.chunk_size, ks=ks)))
    # The users, so that paired tests can check they compare like with like.
    summary[role], per_user[role] = evaluate.labelled(results)
    per_user[role]["users"] = np.asarray(s.users)
  return summary, per_user


def _ranking_job(config, split: splits.Split, sets: dict, protocol: str,
                 roles: tuple[str, ...]) -> trainer.Job:
  """The Job of a (user, item) model trained on `split.train`."""
  train, tc = split.train, config.train
  if not config.eval.valid_full and config.eval.select.startswith("full/"):
    raise ValueError(f"eval.select={config.eval.select!r} needs full "
                     "ranking, but eval.valid_full is False")
  model = setup.build_model(config.model, train.n_users, train.n_items)
  score = setup.score_fn(model)
  task = tasks.TASKS[tc.loss]
  positives = negatives.PositiveSets.build(train.users, train.items,
                                           train.n_users, train.n_items)
  sampler = _sampler(tc.negative_sampling, positives, train)
  init_key = jax.random.split(jax.random.key(config.seed))[0]
  template = setup.create_state(model, setup.build_optimizer(config.optim),
                                init_key)
  loss = task.loss
  if tc.get("l2", 0.0):
    loss = functools.partial(loss, l2=tc.l2)

  def epoch_batches(epoch, rng):
    del epoch
    return task.epoch(train, sampler, tc.negatives, tc.batch_size, rng)

  def run_eval(params, roles, final):
    return _evaluate(score, params, sets, roles, protocol, config,
                     full=final or config.eval.valid_full)

  return trainer.Job(template=template, loss_fn=loss,
                     epoch_batches=epoch_batches, evaluate=run_eval,
                     select=config.eval.select, roles=roles,
                     init=_pretrained_init(config.model.get("pretrained"),
                                           train),
                     make_step=_tables_step(config.optim, model, loss))


def _tables_step(optim, model, loss):
  """`make_step(axis_name)` of the row-sparse step when `optim.tables`
  asks for it ('row_adam' with Adam, 'row_sgd' with SGD), else None (the
  launcher's own step)."""
  tables = optim.get("tables", "dense")
  if tables == "dense":
    return None
  needs = {"row_adam": "adam", "row_sgd": "sgd"}
  if tables not in needs:
    raise ValueError(f"unknown optim.tables {tables!r}; expected 'dense', "
                     "'row_adam' or 'row_sgd'")
  if optim.name != needs[tables] or optim.get("clip_norm", 0.0):
    raise ValueError(f"optim.tables={tables!r} needs optim.name="
                     f"{needs[tables]!r} without clipping, not "
                     f"{optim.name!r} with clip_norm="
                     f"{optim.get('clip_norm', 0.0)}")
  return functools.partial(row_sparse.make_train_step, model, loss,
                           optim.learning_rate, optimizer=needs[tables])


SAMPLINGS = ("uniform", "popularity", "uniform-all")


def _sampler(name: str, positives, train) -> tasks.NegativeSampler:
  """`train.negative_sampling`: 'uniform' or 'popularity' over each user's
  non-positives, or 'uniform-all' over every item, positives included
  (Rendle et al.'s MF code)."""
  if name not in SAMPLINGS:
    raise ValueError(f"train.negative_sampling={name!r}: expected one of "
                     f"{SAMPLINGS}")
  if name == "popularity":
    return tasks.NegativeSampler(
        positives, train.item_counts().astype(np.float64))
  return tasks.NegativeSampler(positives,
                               exclude_positives=name != "uniform-all")


def _pretrained_init(pretrained, train):
  """The Job's init for NeuMF from pretrained GMF and MLP checkpoints
  (`model.pretrained`), or None when the config names none."""
  if not (pretrained and pretrained.gmf):
    return None

  def init(state):
    logging.info("NeuMF initialised from %s and %s", pretrained.gmf,
                 pretrained.mlp)
    return setup.init_from_pretrained(state, pretrained, train.n_users,
                                      train.n_items)
  return init


def train_and_evaluate(config, workdir: str | Path) -> dict:
  """Trains, selects on validation, evaluates test; returns the results.

  Writes config.json, manifest.json, metrics.jsonl, checkpoints/,
  results.json and per_user.npz (per-user metrics for significance tests)
  into `workdir`.
  """
  workdir = Path(workdir)
  records.write_run_header(workdir, config)
  split, sets, protocol, digest = prepare_data(config, workdir)
  info = {"protocol": protocol, "negatives_sha256": digest,
          "dataset": split.train.name, "split": split.protocol}

  refit = bool(config.train.get("refit")) and "valid" in sets
  if config.model.name == "popularity":
    counts = (split.valid_in_train() if refit else split).train.item_counts()
    score = lambda counts, u, c: popularity_score_fn(counts)(u, c)
    summary, per_user = _evaluate(score, counts, sets, tuple(sets), protocol,
                                  config)
    return trainer.finish(workdir, summary, per_user,
                          {**info, "train_seconds": 0.0})
  if not refit:
    job = _ranking_job(config, split, sets, protocol, tuple(sets))
    return trainer.fit(config, workdir, job, info)

  # Phase 1 selects the epoch count on validation; phase 2 retrains on
  # train + validation for that many epochs, and test is read from it once.
  # A missing refit of a pretrained half fails here, before phase 1 trains.
  _pretrained_refits(config.copy_and_resolve_references())
  return trainer.fit_with_refit(
      config, workdir, lambda: _ranking_job(config, split, sets, protocol,
                                            tuple(sets)),
      lambda cfg: _ranking_job(cfg, split.valid_in_train(), sets, protocol,
                               ("test",)), info,
      refit_config=_pretrained_refits)


def _pretrained_refits(config):
  """Phase 2 of a pretrained NeuMF's refit fine-tunes from its GMF and MLP
  runs' own refits (`<run>/refit`, trained on the same train + valid), as
  phase 1 fine-tunes from their train-only models."""
  pretrained = config.model.get("pretrained")
  if not (pretrained and pretrained.gmf):
    return config
  for half in ("gmf", "mlp"):
    path = Path(pretrained[half]) / "refit"
    if not (path / "config.json").exists():
      raise FileNotFoundError(
          f"{path}: a refit of a pretrained NeuMF needs its {half.upper()} "
          f"run refit too (train.refit=True in {pretrained[half]}), so that "
          "both halves saw train + validation; none is there")
    pretrained[half] = str(path)
  return config
