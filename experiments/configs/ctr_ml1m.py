"""LR, FM, FFM, Wide&Deep and DeepFM on MovieLens-1M as CTR.

Data: all 1,000,209 ML-1M ratings, label = rating >= 4 (57.5% positive);
fields user, movie, gender, age, occupation, zip (one-hot) and genres
(multi-hot, up to 6, mean-pooled); random 8:1:1 split with
`data.split_seed`; vocabularies (min count 1) fitted on train.
No published figure exists for this split; the table is for side-by-side
comparison between implementations.

Settings: Frappe_x1's (embedding 10, batch 4096, Adam 1e-3, L2 on the
embedding tables, early stopping by validation AUC, patience 2), except
that the deep models use a 256-128 MLP (BARS's 400-400-400 costs 7x the
FLOPs: about 2 min per epoch on the shared 2-core CPU) and an embedding L2
of 0.01 (BARS's MovielensLatest_x1 value; 0.05 is Frappe's).

One run:
  JAXREC_DATA_DIR=/work/shared/data python -m experiments.main \\
      --config=experiments/configs/ctr_ml1m.py:DeepFM \\
      --workdir=/work/runs/ctr/ml1m_dfm
The table:
  JAXREC_DATA_DIR=/work/shared/data python -m experiments.sweep \\
      --config=experiments/configs/ctr_ml1m.py \\
      --workdir=/work/runs/ctr/ml1m --name=ctr_ml1m --metrics=AUC,logloss
Runtime, measured on the shared 2-core CPU (load average 10-30): data
loading about 1-2 min; LR 50 epochs in 2.5 min, FM 50 epochs in 8 min,
DeepFM 10 epochs in 15 min; per-run figures in results/ctr_ml1m.md.
"""

from ml_collections import ConfigDict

from experiments.configs.base import base_config

SEEDS = (0, 1, 2)
DNN = {"hidden": (256, 128), "dropout": 0.2, "batch_norm": True}
MODELS = {
    "LR": {"name": "lr", "reg": 0.0},
    "FM": {"name": "fm", "dim": 10, "reg": 5e-6},
    "FFM": {"name": "ffm", "dim": 10, "reg": 1e-6},
    "WideDeep": {"name": "widedeep", "dim": 10, "reg": 0.01, **DNN},
    "DeepFM": {"name": "deepfm", "dim": 10, "reg": 0.01, **DNN},
}
NOTES = """CTR protocol (SPEC): MovieLens-1M ratings as clicks (rating >= 4), one
random 8:1:1 split (split seed 0) shared by every run; AUC (exact, ties 1/2)
and log loss over the full test set (100,021 rows), on the best epoch by
validation AUC. Seeds vary the initialisation and the batch order only."""


def get_config(model: str = "DeepFM"):
  """`--config=experiments/configs/ctr_ml1m.py:FM` picks the model."""
  c = base_config()
  c.family = "ctr"
  c.data.name = "ml-1m-ctr"
  c.data.split_seed = 0
  c.model = ConfigDict(MODELS[model])
  c.optim.name = "adam"
  c.optim.learning_rate = 1e-3
  c.train.batch_size = 4096
  c.train.epochs = 50
  c.train.steps_per_call = 64
  c.train.log_every_steps = 10**9
  c.eval.patience = 2
  c.eval.select = "ctr/AUC"
  return c


def get_sweep():
  return [dict(model=name, variant="emb=10", seed=seed,
               overrides={"model": dict(MODELS[name])})
          for name in MODELS for seed in SEEDS]
