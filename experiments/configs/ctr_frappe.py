"""LR, FM, FFM, Wide&Deep and DeepFM on Frappe as BARS Frappe_x1.

Data: the NFM/BARS libfm split (train 202,027 / valid 57,722 / test 28,860
rows, 10 one-hot fields, vocabularies with min count 1 fitted on train).
BARS settings (FuxiCTR model zoo, Frappe_x1): embedding 10, batch 4096,
Adam lr 1e-3, BCE + (reg / 2) * ||E||^2 on the embedding tables, up to 100
epochs, best epoch and early stopping (patience 2) by validation AUC;
reg: FM 5e-6, FFM 1e-6 (BARS logs), LR 0 (not found); DeepFM: MLP
400-400-400, batch norm, dropout 0.2, reg 0.05 (BARS); Wide&Deep: DeepFM's
settings (its BARS Frappe config was not found).

One run (DeepFM, seed 0; `:FM`, `:FFM`, `:LR`, `:WideDeep` for the others):
  JAXREC_DATA_DIR=/work/shared/data python -m experiments.main \
      --config=experiments/configs/ctr_frappe.py:DeepFM \
      --workdir=/work/runs/ctr/dfm
The table (5 models x 3 seeds):
  JAXREC_DATA_DIR=/work/shared/data python -m experiments.sweep \
      --config=experiments/configs/ctr_frappe.py \
      --workdir=/work/runs/ctr/frappe --name=ctr_frappe \
      --metrics=AUC,logloss
Runtime, measured on the shared 2-core CPU (load average 10-30, so wall
times are inflated several-fold): LR and FM 100 epochs in 25-65 s; FFM
80 epochs in 25 min; DeepFM and Wide&Deep 11-19 epochs in 12-25 min
(about 6,000 examples/s, the 400-400-400 MLP dominates); per-run figures in
results/ctr_frappe.md (train s column).

BARS Frappe_x1 test AUC / log loss: LR 0.9356/0.3076, FM 0.9671/0.2065,
FFM 0.9786/0.1860, Wide&Deep 0.9841/0.1490, DeepFM 0.9842/0.1482.
"""

from ml_collections import ConfigDict

from experiments.configs.base import base_config

SEEDS = (0, 1, 2)
BARS = {"LR": (0.9356, 0.3076), "FM": (0.9671, 0.2065),
        "FFM": (0.9786, 0.1860), "WideDeep": (0.9841, 0.1490),
        "DeepFM": (0.9842, 0.1482)}
DNN = {"hidden": (400, 400, 400), "dropout": 0.2, "batch_norm": True}
MODELS = {
    "LR": {"name": "lr", "reg": 0.0},
    "FM": {"name": "fm", "dim": 10, "reg": 5e-6},
    "FFM": {"name": "ffm", "dim": 10, "reg": 1e-6},
    "WideDeep": {"name": "widedeep", "dim": 10, "reg": 0.05, **DNN},
    "DeepFM": {"name": "deepfm", "dim": 10, "reg": 0.05, **DNN},
}
NOTES = """CTR protocol (SPEC): fixed BARS Frappe_x1 split; AUC (exact, ties
1/2) and log loss over the full test set, on the best epoch by validation
AUC. Paper = the BARS Frappe_x1 figure."""


def get_config(model: str = "DeepFM"):
  """`--config=experiments/configs/ctr_frappe.py:FM` picks the model."""
  c = base_config()
  c.family = "ctr"
  c.data.name = "frappe_x1"
  c.data.train = "rebuilt"        # or 'valid-split' (development only)
  c.data.cache_dir = ""           # rebuilt train file; '' -> frappe default
  c.model = ConfigDict(MODELS[model])
  c.optim.name = "adam"
  c.optim.learning_rate = 1e-3
  c.train.batch_size = 4096
  c.train.epochs = 100
  c.train.steps_per_call = 64
  c.train.log_every_steps = 10**9
  c.eval.patience = 2
  c.eval.select = "ctr/AUC"
  return c


def get_sweep():
  return [dict(model=name, variant="emb=10", seed=seed,
               overrides={"model": dict(MODELS[name])},
               paper={"ctr": {"AUC": BARS[name][0],
                              "logloss": BARS[name][1]}})
          for name in MODELS for seed in SEEDS]
