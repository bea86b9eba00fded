"""GRU4Rec and session baselines on the YooChoose 100k-click sample.

Data: session-rec's prepared split of the first 100k YooChoose (RSC15)
clicks (`session/yoochoose-clicks-100k/`).  GRU4Rec trains on `_train_tr`
and picks its number of epochs on `_train_valid` (the last training day,
best validation MRR@20, patience 3), then is retrained from scratch on
`_train_full` (= both) for that many epochs and tested once on `_test` (the
day after), as the official code's final runs; the baselines are fitted on
`_train_full`.  Consecutive repeats of an item are removed; items are
indexed on `_train_full`, evaluation sessions keep only those items, then
sessions shorter than 2 are dropped.  Session protocol:
every next item of a test session is a target, all items ranked
(pessimistic ties), Recall@k and MRR@k at 10 and 20.

GRU4Rec settings are the official tuned ones (hidasib/GRU4Rec_PyTorch_Official
paramfiles): cross-entropy with logQ from `rsc15_xe_shared_100_best.py`
(100 units, batch 32, dropout 0.0/0.4, Adagrad lr 0.2 momentum 0.2, 2,048
extra samples, alpha 0.5) and BPR-max from `retailrocket_bprmax_shared_best.py`
(224 units, batch 80, dropout 0.5/0.05, lr 0.05 momentum 0.4, alpha 0.4,
bpreg 1.95, ELU 0.5); neither was tuned on this sample.

One run:
  python -m experiments.main --config=experiments/configs/session_yoochoose.py \
      --workdir=/work/runs/session/gru_ce
The table (3 seeds each):
  python -m experiments.sweep \
      --config=experiments/configs/session_yoochoose.py --workdir=/work/runs/session/yoochoose --name=session_yoochoose \
      --metrics=Recall@20,MRR@20,Recall@10,MRR@10
Runtime: see results/session_yoochoose.md (seconds per epoch on 2 cores).

No paper figure applies: GRU4Rec+'s published RSC15 figures (CIKM 2018) are
on the full 31.6M-click log, about 450x this sample.
"""

from ml_collections import ConfigDict

from experiments.configs.base import base_config

SEEDS = (0, 1, 2)
NOTES = """Session protocol on session-rec's YooChoose 100k-click sample: every
next item of a test session is a target, all items ranked (pessimistic ties),
consecutive repeats removed. GRU4Rec picks its epoch count on `_train_valid`
(trained on `_train_tr`), then is retrained on `_train_full` and tested once;
the baselines are fitted on `_train_full`. Settings: the official tuned
paramfiles (CE+logQ: rsc15_xe_shared_100_best; BPR-max:
retailrocket_bprmax_shared_best), not tuned on this sample. No paper figure
applies: GRU4Rec+'s published RSC15 figures (Hidasi & Karatzoglou, CIKM 2018)
are on the full 31.6M-click log, 450x this sample, so they are not a target
here."""


def get_config():
  c = base_config()
  c.family = "session"
  c.data.name = "yoochoose-clicks-100k"
  c.data.protocol = "session"
  c.data.dedupe = True
  c.model = ConfigDict(dict(
      name="gru4rec", layers=(100,), embedding=0, constrained=True,
      dropout_embed=0.0, dropout_hidden=0.4, elu=0.0,
      n_sims=100, lmbd=20.0, alpha=0.5))  # the last three: item-kNN
  c.optim = ConfigDict(dict(name="adagrad-momentum", learning_rate=0.2,
                            momentum=0.2, clip_norm=0.0))
  c.train.loss = "ce"
  c.train.logq = 1.0
  c.train.bpreg = 0.0
  c.train.n_sample = 2048
  c.train.sample_alpha = 0.5
  c.train.batch_size = 32
  c.train.epochs = 15
  c.train.refit = True
  c.train.steps_per_call = 128
  c.train.log_every_steps = 2000
  c.eval.batch_size = 512
  c.eval.ks = (10, 20)
  c.eval.select = "session-full/MRR@20"
  c.eval.patience = 3
  return c


BPR_MAX = {"model.layers": (224,), "model.dropout_embed": 0.5,
           "model.dropout_hidden": 0.05, "model.elu": 0.5,
           "optim.learning_rate": 0.05, "optim.momentum": 0.4,
           "train.loss": "bpr-max", "train.bpreg": 1.95, "train.logq": 0.0,
           "train.sample_alpha": 0.4, "train.batch_size": 80,
           "train.epochs": 10}


def get_sweep():
  runs = [dict(model="Popularity", variant="-", seed=0,
               overrides={"model.name": "popularity"}),
          dict(model="Item-kNN", variant="lambda=20,alpha=0.5", seed=0,
               overrides={"model.name": "item_knn"}, baseline=True)]
  for seed in SEEDS:
    runs.append(dict(model="GRU4Rec", variant="ce+logq,100", seed=seed))
    runs.append(dict(model="GRU4Rec", variant="bpr-max,224", seed=seed,
                     overrides=BPR_MAX))
  return runs
