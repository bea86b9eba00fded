"""Ablation on Frappe_x1: embedding size, MLP depth, FM vs DeepFM.

Everything else as in `ctr_frappe.py` (BARS settings, early stopping by
validation AUC). Rows: FM and DeepFM at embedding 4, 16, 32, 64 (10 is in
results/ctr_frappe.md), DeepFM with 1 and 2 hidden layers of 400 at
embedding 10 (3 layers is the main table), one seed each.

  JAXREC_DATA_DIR=/work/shared/data python -m experiments.sweep \\
      --config=experiments/configs/ctr_ablation.py \\
      --workdir=/work/runs/ctr/ablation --name=ctr_ablation \\
      --metrics=AUC,logloss
Runtime (2-core CPU): FM 1-2 min per run (shared machine), DeepFM 1-4 min
per run on an idle machine; about 20 min in all. Measured (AUC): FM 0.9525 /
0.9726 / 0.9748 / 0.9776 and DeepFM 0.9766 / 0.9826 / 0.9828 / 0.9805 at
embedding 4 / 16 / 32 / 64; DeepFM depth 1 / 2: 0.9803 / 0.9807.
"""

from experiments.configs import ctr_frappe

SEEDS = (0,)
DIMS = (4, 16, 32, 64)
DEPTHS = (1, 2)
NOTES = """Ablation on Frappe_x1 (CTR protocol, BARS settings otherwise); one
seed per row; embedding 10 and depth 3 are the rows of results/ctr_frappe.md."""


def get_config(model: str = "DeepFM"):
  return ctr_frappe.get_config(model)


def get_sweep():
  runs = []
  for dim in DIMS:
    for name in ("FM", "DeepFM"):
      runs += [dict(model=name, variant=f"emb={dim}", seed=seed,
                    overrides={"model": {**ctr_frappe.MODELS[name],
                                         "dim": dim}}) for seed in SEEDS]
  for depth in DEPTHS:
    runs += [dict(model="DeepFM", variant=f"emb=10,depth={depth}", seed=seed,
                  overrides={"model": {**ctr_frappe.MODELS["DeepFM"],
                                       "hidden": (400,) * depth}})
             for seed in SEEDS]
  return runs
