"""ANN benchmark: recall@10 against exact search and queries per second.

  python scripts/bench_ann.py --n_items=1000000 --dim=128 \
      --model_run=/work/runs/retrieval/ml1m/two-tower-logQ=counted,hits=removed-seed0

Indexes: exact inner product (IndexFlatIP), IVF-Flat at several nprobe,
HNSW-Flat at several efSearch, all from `jaxrec.retrieval`; each timed
single-query (one `search` call per query: the serving case) and batched
(all queries in one call).  Timings are medians over repeats after one
warm-up; recall@10 is against the exact index's top 10.

Data sets:
- random: unit vectors with i.i.d. Gaussian coordinates (no structure: the
  hard case for ANN), queries the same.
- model: a trained two-tower's item vectors extended to n_items: each
  synthetic item is a real item's vector plus Gaussian noise (std
  `--noise` per coordinate), lifted to `--dim` by a fixed random
  orthonormal map and re-normalised; queries are the real users' vectors
  lifted the same way.  So neighbourhoods keep the model's cluster
  structure at 1M scale.  The real catalogue (3,706 movies) is also
  measured as is.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import faiss
import numpy as np

from jaxrec import results, retrieval, timing


def _unit(x: np.ndarray) -> np.ndarray:
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_set(n, n_queries, dim, seed):
  rng = np.random.default_rng(seed)
  return (_unit(rng.standard_normal((n, dim), np.float32)),
          _unit(rng.standard_normal((n_queries, dim), np.float32)))


def model_vectors(run: str) -> tuple[np.ndarray, np.ndarray]:
  """(item vectors (I, D), user vectors (U, D)) of a finished two-tower run."""
  import jax.numpy as jnp  # only this data set needs the model
  from jaxrec.train import retrieval as family
  _, split, _, model, params, features = family.restore_run(run)
  train = split.train
  items = model.apply({"params": params}, jnp.arange(1, train.n_items + 1),
                      features, method="item_tower")
  users = model.apply({"params": params}, jnp.arange(1, train.n_users + 1),
                      features, method="user_tower")
  return np.asarray(items), np.asarray(users)


def model_set(items, users, n, n_queries, dim, noise, seed):
  rng = np.random.default_rng(seed)
  lift = np.linalg.qr(rng.standard_normal((dim, items.shape[1])))[0]
  base = items[rng.integers(0, len(items), n)]
  synth = base + noise * rng.standard_normal(base.shape).astype(np.float32)
  queries = users[rng.choice(len(users), min(n_queries, len(users)),
                             replace=False)]
  return _unit(synth @ lift.T), _unit(queries @ lift.T)


def timed(fn, repeats):
  return timing.median_seconds(fn, repeats)


def measure(index, queries, k, n_single, repeats):
  """(ids of all queries, batched q/s, single-query q/s).

  Ids are FAISS row + 1, as `recall_at_k` reads id 0 as padding."""
  labels = index.search(queries, k)[1] + 1
  batched = len(queries) / timed(lambda: index.search(queries, k), repeats)
  few = queries[:n_single]
  single = n_single / timed(
      lambda: [index.search(q[None], k) for q in few], repeats)
  return labels, batched, single


def bench(name, items, queries, args, rows, hnsw=True):
  """Rows for one data set: exact, IVF per nprobe, HNSW per efSearch."""
  k = args.k
  def row(variant, labels, exact, batched, single, build_s, base):
    recall = retrieval.recall_at_k(labels, exact)
    rows.append({
        "model": variant.split(",")[0], "variant": variant, "dataset": name,
        "protocol": f"recall@{k}-vs-exact",
        "metrics": {
            f"recall@{k}": {"mean": recall, "std": 0.0},
            "batched_qps": {"mean": batched, "std": 0.0},
            "single_qps": {"mean": single, "std": 0.0},
            "batched_x_exact": {"mean": batched / base[0], "std": 0.0},
            "single_x_exact": {"mean": single / base[1], "std": 0.0},
            "build_s": {"mean": build_s, "std": 0.0}}})
    print(json.dumps(rows[-1]), flush=True)

  t = time.perf_counter()
  flat = retrieval.build(items, retrieval.IndexConfig("flat"))
  build = time.perf_counter() - t
  exact, b, s = measure(flat, queries, k, args.single_exact, args.repeats)
  base = (b, s)
  row("exact", exact, exact, b, s, build, base)
  del flat
  t = time.perf_counter()
  ivf = retrieval.build(items, retrieval.IndexConfig(
      "ivf", nlist=args.nlist, train_size=args.ivf_train))
  build = time.perf_counter() - t
  for nprobe in args.nprobe:
    retrieval.set_search_params(ivf, nprobe=nprobe)
    labels, b, s = measure(ivf, queries, k, args.single, args.repeats)
    row(f"IVF{ivf.nlist},nprobe={nprobe}", labels, exact, b, s, build, base)
  del ivf
  if not hnsw:
    return
  t = time.perf_counter()
  hnsw = retrieval.build(items, retrieval.IndexConfig(
      "hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction))
  build = time.perf_counter() - t
  for ef in args.ef_search:
    retrieval.set_search_params(hnsw, ef_search=ef)
    labels, b, s = measure(hnsw, queries, k, args.single, args.repeats)
    row(f"HNSW{args.hnsw_m},efSearch={ef}", labels, exact, b, s, build, base)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--n_items", type=int, default=1_000_000)
  p.add_argument("--dim", type=int, default=128)
  p.add_argument("--queries", type=int, default=1000)
  p.add_argument("--k", type=int, default=10)
  p.add_argument("--single", type=int, default=200)
  p.add_argument("--single_exact", type=int, default=20)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--nlist", type=int, default=4096)
  p.add_argument("--ivf_train", type=int, default=131072)
  p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
  p.add_argument("--hnsw_m", type=int, default=32)
  p.add_argument("--ef_construction", type=int, default=64)
  p.add_argument("--ef_search", type=int, nargs="+",
                 default=[32, 64, 128, 256])
  p.add_argument("--sets", nargs="+", default=["random", "model"],
                 help="random, model (= model-real + model-1m)")
  p.add_argument("--hnsw_on", nargs="+", default=["random", "model"],
                 help="data sets that get an HNSW index (its build is slow)")
  p.add_argument("--model_run", default="")
  p.add_argument("--noise", type=float, default=0.05)
  p.add_argument("--name", default="ann")
  p.add_argument("--merge", default="",
                 help="an earlier JSON of this script: its rows for "
                 "(data set, variant) pairs not measured now are kept")
  p.add_argument("--out", default="results")
  args = p.parse_args()
  print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
        f"{faiss.get_num_gpus()} GPUs", flush=True)
  rows = []
  for name in args.sets:
    if name == "random":
      items, queries = random_set(args.n_items, args.queries, args.dim, 0)
      bench(f"random-{args.n_items}x{args.dim}", items, queries, args, rows,
            hnsw="random" in args.hnsw_on)
    else:
      real_items, users = model_vectors(args.model_run)
      if name in ("model", "model-real"):
        small = argparse.Namespace(**{**vars(args), "nlist": 64,
                                      "ivf_train": 0})
        bench(f"two-tower-ml1m-{len(real_items)}x{real_items.shape[1]}",
              real_items, users[:args.queries], small, rows)
      if name in ("model", "model-1m"):
        items, queries = model_set(real_items, users, args.n_items,
                                   args.queries, args.dim, args.noise, 0)
        bench(f"two-tower-extended-{args.n_items}x{args.dim}", items,
              queries, args, rows, hnsw="model" in args.hnsw_on)
  command = results.command_line()
  if args.merge:
    prev = json.loads(Path(args.merge).read_text())
    now = {(r["dataset"], r["variant"]) for r in rows}
    kept = [r for r in prev["rows"] if (r["dataset"], r["variant"]) not in now]
    rows = kept + rows
    command += (f"; {len(kept)} rows kept from `{prev['command']}` "
                f"(commit {prev['commit']})")
  notes = (__doc__.split("\n\n", 2)[2] + "\nqps = queries per second "
           "(median of repeats); *_x_exact = qps over exact search's qps in "
           "the same mode; build_s = index build (IVF: k-means on "
           f"{args.ivf_train} vectors + adding all).")
  results.write(args.name, rows, command, args.out, notes)


if __name__ == "__main__":
  main()
