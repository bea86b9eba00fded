"""Two-tower retrieval on MovieLens-1M, NCF split, full ranking.

The NCF paper's test item per user (`ncf-ml1m`, see jaxrec/data/ncf.py),
one random training interaction per user for validation, every other
rating a training positive; each user's test item ranked against all
3,706 movies with the user's training and validation movies masked.
Recall@K equals HR@K here (one test item per user).  Towers: ids plus
MovieLens side features (user gender, age, occupation, zip prefix; movie
genres, decade); in-batch softmax with logQ correction and accidental-hit
removal; best epoch by validation full-ranking HR@50.

One run:
  python -m experiments.main --config=experiments/configs/two_tower_ml1m.py \
      --workdir=/work/runs/retrieval/tt
The table (two-tower with and without logQ / hit removal, beside MF-BPR
and NeuMF-8 trained by the 'ranking' family under the same protocol):
  python -m experiments.sweep --config=experiments/configs/two_tower_ml1m.py \
      --workdir=/work/runs/retrieval/ml1m --name=retrieval_ml1m \
      --metrics=HR@10,HR@50,HR@100,NDCG@10
Runtime (2-core CPU, shared): see results/retrieval_ml1m.md.
No paper figure for this protocol; SPEC target: two-tower with logQ above
MF-BPR on Recall@50.
"""

from ml_collections import ConfigDict

from experiments.configs.base import base_config

NOTES = """Full ranking over all 3,706 movies (NCF split: the authors' test item per
user; training and validation movies masked); Recall@K = HR@K because each
user has one test item. The ncf-sampled-99 rows are the NCF paper's sampled
protocol on the same models. MF-BPR and NeuMF rows come from the 'ranking'
family (jaxrec/train/loop.py) on the same split with the same validation
item, selected on validation full-ranking HR@50 (MF) or sampled NDCG@10
(NeuMF, whose full ranking per epoch is costly)."""


def get_config():
  c = base_config()
  c.family = "retrieval"
  c.data.name = "ncf-ml1m"
  c.model = ConfigDict({
      "name": "two_tower", "dim": 64, "id_dim": 64, "feature_dim": 16,
      "hidden": (128,), "features": True, "init_temperature": 0.07,
      "learn_temperature": True, "normalize": True})
  c.optim.name = "adam"
  c.optim.learning_rate = 0.002
  c.train.loss = "softmax"           # or 'triplet'
  c.train.logq = "counted"           # 'none', 'counted', 'streaming'
  c.train.streaming_alpha = 0.01
  c.train.remove_accidental_hits = True
  c.train.mixed_negatives = 0        # extra uniform negatives per batch
  c.train.negatives = 8              # triplet only
  c.train.margin = 0.2               # triplet only
  c.train.batch_size = 1024
  c.train.epochs = 10
  c.train.steps_per_call = 64
  c.train.log_every_steps = 2000
  c.eval.ks = (10, 50, 100)
  c.eval.select = "full/HR@50"
  c.eval.patience = 3
  return c


def _tt(variant, seed, **train):
  return dict(model="two-tower", variant=variant, seed=seed,
              overrides={f"train.{k}": v for k, v in train.items()})


def get_sweep():
  ranking = {"family": "ranking", "eval.select": "full/HR@50"}
  return [
      _tt("logQ=counted,hits=removed", 0),
      _tt("logQ=streaming,hits=removed", 0, logq="streaming"),
      _tt("logQ=none,hits=removed", 0, logq="none"),
      _tt("logQ=counted,hits=kept", 0, remove_accidental_hits=False),
      _tt("logQ=none,hits=kept", 0, logq="none",
          remove_accidental_hits=False),
      dict(model="MF-BPR", variant="dim=64", seed=0, overrides={
          **ranking, "model": {"name": "mf", "dim": 64, "init_std": 0.1},
          "train.loss": "bpr", "train.negatives": 1,
          "train.batch_size": 1024, "train.epochs": 15,
          "train.steps_per_call": 256, "optim.learning_rate": 0.002}),
      dict(model="NeuMF", variant="factors=8", seed=0, overrides={
          **ranking, "model": {"name": "neumf", "factors": 8, "layers": 3},
          "train.loss": "bce", "train.negatives": 4,
          "train.batch_size": 256, "train.epochs": 3,
          "train.steps_per_call": 256, "optim.learning_rate": 0.001,
          "eval.valid_full": False,
          "eval.select": "ncf-sampled-99/NDCG@10"}),
  ]
