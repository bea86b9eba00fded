"""MF (BCE and BPR) and popularity on MovieLens-100k, random leave-one-out.

Protocol: per user one random interaction is test, one validation, the rest
train (`loo-random`, split seed 0); each test item is ranked among 99 frozen
uniform negatives (`sampled-uniform-99`) and among all items (`full`), the
user's training (and validation) items masked.  Best epoch by validation
full NDCG@10; patience 5.

One run:
  python -m experiments.main --config=experiments/configs/mf_ml100k.py \
      --workdir=runs/mf_ml100k_bce
The table (3 seeds per model, about 3 minutes on a 2-core CPU):
  python -m experiments.sweep --config=experiments/configs/mf_ml100k.py \
      --workdir=runs/mf_ml100k --name=mf_ml100k
No paper anchor under this exact split; popularity is the floor.
"""

from experiments.configs.base import base_config

NOTES = """MovieLens-100k, random leave-one-out (split seed 0), 99 frozen uniform
negatives per user; full = ranking over all 1,682 items with the user's
training and validation items masked. Best epoch chosen on validation
full NDCG@10; test evaluated once on it. Mean ± std over 3 training seeds."""


def get_config():
  c = base_config()
  c.data.name = "ml-100k"
  c.data.split = "loo-random"
  c.model.dim = 64
  c.train.loss = "bce"
  c.train.batch_size = 256
  c.train.epochs = 40
  c.optim.name = "adamw"
  # Chosen on validation full NDCG@10 (seed 0) from lr {0.001, 0.003} x
  # weight decay {0, 0.05, 0.2}, for BCE and BPR alike.
  c.optim.learning_rate = 0.001
  c.optim.weight_decay = 0.05
  c.eval.patience = 5
  return c


def get_sweep():
  runs = []
  for seed in (0, 1, 2):
    runs.append(dict(model="Popularity", variant="train counts", seed=seed,
                     overrides={"model.name": "popularity"}))
    runs.append(dict(model="MF-BCE", variant="dim=64,neg=4", seed=seed,
                     overrides={"train.loss": "bce"}))
    runs.append(dict(model="MF-BPR", variant="dim=64,neg=4", seed=seed,
                     overrides={"train.loss": "bpr"}))
  return runs
