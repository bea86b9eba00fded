"""Two-stage pipeline on MovieLens-1M: accuracy against the candidate stage
alone, and `recommend` latency over a 1M-item catalogue.

  JAXREC_DATA_DIR=/work/shared/data python scripts/bench_pipeline.py \
      --tt_run=/work/runs/retrieval/ml1m/two-tower-logQ=counted,hits=removed-seed0 \
      --workdir=/work/runs/retrieval/ranker

Stage 1: the two-tower run's user tower and an exact FAISS index over its
item vectors, training and validation items excluded.  Stage 2: DeepFM
(`jaxrec.models.deepfm`) on the CTR fields of `ctr_datasets.ML1M_SCHEMA`
(user, movie, gender, age, occupation, zip, genres), trained here on the
same NCF training split as implicit feedback (each positive with
`--negatives` uniform unseen items, BCE; best epoch by validation
sampled-99 NDCG@10).  Accuracy: each user's NCF test item against the
top-10 list (HR@10 = Recall@10, NDCG@10).

Latency: the catalogue is extended to `--n_items` by copying real item
vectors with Gaussian noise (std `--noise`, re-normalised) and giving
each copy its source movie's features; an IVF index; each user's real
training list excluded.  One `recommend(users, k=10)` call per batch,
timed end to end (user tower, FAISS, DeepFM over C candidates, top-k);
p50/p99 over `--calls` calls after a warm-up.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxrec import checkpoint, evaluate, pipeline, results, retrieval
from jaxrec.data import ctr_datasets, datasets, fields, movielens, negatives
from jaxrec.train import ctr, trainer
from jaxrec.train import retrieval as family

USER_FIELDS = {"user", "gender", "age", "occupation", "zip"}


def ranker_tables(split, data_dir):
  """PairTables of ML-1M's CTR fields, vocabularies fitted on train."""
  users = movielens.load_ml1m_users(data_dir)
  movies = movielens.load_ml1m_movies(data_dir)
  raw_items = split.train.item_raw_ids
  probe = ctr_datasets.ML1MFeatures(fields.Encoder(()), users, movies)
  cols = probe.columns(split.train.users, raw_items[split.train.items])
  enc = fields.fit(ctr_datasets.ML1M_SCHEMA, cols)
  layout = enc.layout
  feats = ctr_datasets.ML1MFeatures(enc, users, movies)
  tables = pipeline.pair_tables(
      feats.encode_pairs, layout.slot_fields, layout.field_names,
      USER_FIELDS, np.arange(split.train.n_users + 1), raw_items)
  return tables, layout


def train_ranker(args, split, sets, tables, layout):
  """DeepFM on (user, item) implicit pairs; returns its variables."""
  c = ml_collections.ConfigDict(
      {"name": "deepfm", "dim": 10, "hidden": (128, 64), "dropout": 0.0,
       "batch_norm": False, "reg": 1e-6})
  config = ml_collections.ConfigDict({
      "seed": 0, "model": c,
      "optim": {"name": "adam", "learning_rate": 1e-3, "clip_norm": 0.0},
      "train": {"epochs": args.ranker_epochs, "batch_size": 4096,
                "steps_per_call": 32, "launcher": "single",
                "log_every_steps": 10**9, "checkpoint_every_steps": 0,
                "halt_after_steps": 0, "transfer_guard": "allow"},
      "eval": {"patience": 2, "every_epochs": 1}})
  model = ctr.build_model(c, layout)
  state = ctr.create_state(model, config.optim, layout, jax.random.key(0))
  train = split.train
  pos = negatives.PositiveSets.build(train.users, train.items,
                                     train.n_users, train.n_items)

  def batches(epoch, rng):
    del epoch
    users = np.repeat(train.users, args.negatives)
    u = np.concatenate([train.users, users])
    i = np.concatenate([train.items, negatives.sample_uniform(users, pos,
                                                              rng)])
    y = np.r_[np.ones(len(train)), np.zeros(users.size)].astype(np.float32)
    b = config.train.batch_size
    keep = rng.permutation(y.size)[:y.size // b * b].reshape(-1, b)
    ids, vals = tables.pairs_np(u[keep], i[keep])
    return {"ids": ids, "values": vals, "labels": y[keep]}

  def score(vt, users, cands):
    return pipeline.ctr_ranker(model.apply, vt, tables)(users, cands)

  def run_eval(variables, roles, final):
    del final
    s = sets["valid"]
    fn = jax.tree_util.Partial(score, variables)
    per = evaluate.sampled_ranking(fn, s.users, s.candidates(), ks=(10,))
    return ({"valid": {f"sampled/{k}": v for k, v in
                       evaluate.summarize(per).items()}},
            {"valid": per})

  job = trainer.Job(template=state, loss_fn=ctr.make_loss(c.reg),
                    epoch_batches=batches, evaluate=run_eval,
                    select="sampled/NDCG@10", roles=("valid",))
  result = trainer.fit(config, args.workdir, job)
  with checkpoint.Checkpointer(Path(args.workdir) / "checkpoints") as ckpt:
    variables = ckpt.restore(state, which="best")[0].params
  return model, variables, result


def accuracy_rows(args, pipe_factory, sets, rows):
  test = sets["test"]
  for n_cand in args.candidates:
    for ranked in (False, True):
      pipe = pipe_factory(n_cand, ranked)
      t = time.perf_counter()
      lists = np.concatenate([
          pipe.recommend(test.users[lo:lo + 512], k=10)[0]
          for lo in range(0, test.users.size, 512)])
      secs = time.perf_counter() - t
      per = pipeline.list_metrics(lists, test.targets, 10)
      name = "two-tower + DeepFM" if ranked else "two-tower only"
      rows.append({"model": name, "variant": f"C={n_cand}",
                   "dataset": "ml-1m (NCF split)", "protocol": "full",
                   "metrics": {m: {"mean": float(v.mean()), "std": 0.0}
                               for m, v in per.items()},
                   "seconds": secs})
      print(rows[-1], flush=True)
      if not ranked:
        cands = np.concatenate([
            pipe.candidates(test.users[lo:lo + 512])[1]
            for lo in range(0, test.users.size, 512)])
        hit = (cands == test.targets[:, None]).any(1).mean()
        rows[-1]["metrics"]["Recall@C"] = {"mean": float(hit), "std": 0.0}


def latency_rows(args, user_vecs, item_vecs, tables, seen, rank, rows):
  rng = np.random.default_rng(0)
  n_real = item_vecs.shape[0] - 1
  base = np.r_[0, rng.integers(1, n_real + 1, args.n_items)]
  vecs = item_vecs[base] + args.noise * rng.standard_normal(
      (base.size, item_vecs.shape[1])).astype(np.float32)
  vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
  t = time.perf_counter()
  index = retrieval.ItemIndex(vecs, retrieval.IndexConfig(
      "ivf", nlist=args.nlist, nprobe=args.nprobe, train_size=65536))
  build = time.perf_counter() - t
  big = tables.replace(item_ids=tables.item_ids[base],
                       item_values=tables.item_values[base])
  big_rank = pipeline.ctr_ranker(*rank, big)
  for n_cand in args.candidates:
    pipe = pipeline.Pipeline(user_vecs, index, big_rank, *seen,
                             n_candidates=n_cand)
    for bs in args.batch_sizes:
      users = rng.integers(1, 6041, (args.calls + 1, bs))
      pipe.recommend(users[0], k=10)  # warm-up: compiles this shape
      times = []
      for u in users[1:]:
        t = time.perf_counter()
        pipe.recommend(u, k=10)
        times.append(time.perf_counter() - t)
      ms = np.asarray(times) * 1e3
      rows.append({"model": "two-tower + DeepFM", "variant":
                   f"items={args.n_items},C={n_cand},batch={bs}",
                   "dataset": "ml-1m extended", "protocol": "latency",
                   "metrics": {
                       "p50_ms": {"mean": float(np.median(ms)), "std": 0.0},
                       "p99_ms": {"mean": float(np.percentile(ms, 99)),
                                  "std": 0.0},
                       "requests_per_s": {"mean": float(
                           bs / np.median(times)), "std": 0.0},
                       "index_build_s": {"mean": build, "std": 0.0}}})
      print(rows[-1], flush=True)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--tt_run", required=True)
  p.add_argument("--workdir", required=True)
  p.add_argument("--ranker_epochs", type=int, default=4)
  p.add_argument("--negatives", type=int, default=2)
  p.add_argument("--candidates", type=int, nargs="+", default=[100, 500])
  p.add_argument("--n_items", type=int, default=1_000_000)
  p.add_argument("--noise", type=float, default=0.05)
  p.add_argument("--nlist", type=int, default=1024)
  p.add_argument("--nprobe", type=int, default=16)
  p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 32,
                                                                128])
  p.add_argument("--calls", type=int, default=50)
  p.add_argument("--name", default="pipeline_ml1m")
  p.add_argument("--out", default="results")
  args = p.parse_args()

  _, split, sets, model, params, feats = family.restore_run(args.tt_run)
  tables, layout = ranker_tables(split, datasets.resolve_data_dir(""))
  ranker_model, ranker_vars, ranker_result = train_ranker(
      args, split, sets, tables, layout)
  user_tower = jax.jit(lambda u: model.apply(
      {"params": params}, u, feats, method="user_tower"))
  user_vecs = lambda u: np.asarray(user_tower(jnp.asarray(u, jnp.int32)))
  n = split.train.n_items
  item_vecs = np.asarray(model.apply({"params": params}, jnp.arange(n + 1),
                                     feats, method="item_tower"))
  train, valid = split.train, split.valid
  known = negatives.PositiveSets.build(
      np.r_[train.users, valid.users], np.r_[train.items, valid.items],
      train.n_users, n)
  seen = (known.indptr, known.items)
  exact = retrieval.ItemIndex(item_vecs)
  rank = pipeline.ctr_ranker(ranker_model.apply, ranker_vars, tables)

  def factory(n_cand, ranked):
    return pipeline.Pipeline(user_vecs, exact, rank if ranked else None,
                             *seen, n_candidates=n_cand)

  rows = []
  accuracy_rows(args, factory, sets, rows)
  latency_rows(args, user_vecs, item_vecs, tables, seen,
               (ranker_model.apply, ranker_vars), rows)
  notes = (__doc__.split("\n\n", 2)[2] + f"\n\nDeepFM ranker validation: "
           f"{ranker_result.get('valid')}; trained "
           f"{ranker_result.get('train_seconds', 0):.0f} s.")
  results.write(args.name, rows, results.command_line(), args.out, notes)


if __name__ == "__main__":
  main()
