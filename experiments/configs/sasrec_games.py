"""SASRec (Kang & McAuley, ICDM 2018) on "Games" under the SASRec protocol.

Data: SASRec's own `sasrec/Video.txt` (31,013 users, 23,715 items, 287,107
actions; already filtered by the authors). Leave-one-out by time; at test
time the input includes the validation item; the test item is ranked among
100 frozen uniform negatives the user never interacted with, for all users
(the official code samples 10,000), and among all items (full ranking,
history masked). Paper settings: d=50, 2 blocks, 1 head, dropout 0.5, max
length 50, Adam lr 0.001 (b2 0.98), batch 128, BCE with one negative per
position; the block layout of the paper's released code (sasrec_code:
residuals from the normalised input, raw keys, no attention output
projection). Best epoch by validation sampled NDCG@10, checked every 5
epochs (early stop after 4 without gain; patience 0 runs the whole cap).

One run:
  JAXREC_DATA_DIR=/work/shared/data python -m experiments.main \
      --config=experiments/configs/sasrec_games.py --workdir=runs/sasrec_games
The table (SASRec 3 seeds, BERT4Rec under the same protocol):
  JAXREC_DATA_DIR=/work/shared/data python -m experiments.sweep \
      --config=experiments/configs/sasrec_games.py \
      --workdir=runs/seq_games --name=seq_games
Released-code layout (results/seq_games_code.md, 3 seeds, BCE, on a
2-core AVX-512 Xeon, 1.5-1.8 s an epoch):
  early-stopped (epochs 110-160):  HR@10 0.7390, NDCG@10 0.5319
  200 epochs ('code,200-epochs'):  0.7387, 0.5350  (362 s a run)
  300 epochs ('code,300-epochs'):  0.7396, 0.5363  (537 s a run)
  ... --name=seq_games_code '--only=^SASRec-code'
Stopped by validation (patience 8 checks, cap 500; best epochs 200-265,
524-598 s a run; results/seq_games_patience.md, at 8893ef9):
  HR@10 0.7405, NDCG@10 0.5371 (paper 0.7410 / 0.5360)
  ... --name=seq_games_patience '--only=^SASRec-code,patience-8-seed[012]$'
Refit (results/seq_games_refit.md, 3 seeds): the 200-epoch runs, then a
fresh model trained for the best epoch count on each sequence up to and
including its validation item (not the paper's training data), test read
once from it: HR@10 0.7673, NDCG@10 0.5628 (860 s a run, both phases).
  ... --name=seq_games_refit '--only=^SASRec-code,200-epochs(,refit)?-seed[012]$'
The standard pre-LN blocks ('paper' rows below, sasrec_code=False) reach
0.7327-0.7341 / 0.5226-0.5242.
Runtime: one epoch (240 steps of about 128 packed users) takes 2.7 s on
the older 2-core CPU alone (results/bench_seq.md, at 5666b03); a 200-epoch run
took 403-501 s of training at d37f4ca (1,660-2,490 s at earlier commits
under heavy sharing), plus a few seconds per validation.
Measured (3 seeds, 200 epochs, test): HR@10 0.7341, NDCG@10 0.5242
(100 epochs: 0.7297, 0.5181). BERT4Rec (Beauty settings, lr 1e-3, 16
epochs, 1 seed, 989 s): 0.6832, 0.4716 (results/seq_games_bert4rec.md:
  ... --name=seq_games_bert4rec '--only=^BERT4Rec-paper-beauty,lr=1e-3').
SASRec with the softmax over all items (3 seeds, 30 epochs, about 45-65 s
per epoch, 1,559-2,177 s each; rerun at 4fbd4f4): HR@10 0.7391,
NDCG@10 0.5548; full ranking 0.1132, 0.0618 (results/seq_games_softmax.md:
  ... --name=seq_games_softmax '--only=^SASRec-softmax-seed[012]$').
The same with a 60-epoch cap, since those runs peaked at their last epoch
(seed 0, per-element attention dropout: best epoch 45, test HR@10 0.7382,
NDCG@10 0.5547, full 0.1136 / 0.0619; about 52 s per epoch alone):
  ... --name=seq_games_softmax60 '--only=^SASRec-softmax,epochs=60'

The BCE and BERT4Rec figures above were made with flax's attention
dropout, one (L, L) mask shared by every row and head; since 42df3f7 each
attention weight is dropped independently (as in the SASRec and BERT code),
so a rerun differs. The softmax figures are from code with that change.
The BCE rows rerun at d37f4ca (3-d attention matmuls, ThreeFry dropout
words, XLA YNNPACK fusions off; 403-501 s a run alone): HR@10 0.7327,
NDCG@10 0.5226; full ranking 0.0645, 0.0321
(results/seq_games_sasrec_bce.md: ... --name=seq_games_sasrec_bce
'--only=^SASRec-paper-seed[012]$').

Paper (Table 3, Games): SASRec HR@10 0.7410, NDCG@10 0.5360.
"""

from ml_collections import ConfigDict

from experiments.configs.base import base_config

SEEDS = (0, 1, 2)
PAPER = {"sasrec-sampled-100": {"HR@10": 0.7410, "NDCG@10": 0.5360}}
NOTES = """SASRec protocol (SPEC §2): leave-one-out by time on SASRec's Games file;
at test time the input includes the validation item; the test item is ranked
among 100 uniform negatives (frozen per dataset and split, never the user's own
items), over all users. full = every item ranked, the user's whole history
(train items and the validation item) and the padding id masked. Best epoch by
validation sasrec-sampled-100/NDCG@10; test read once, on that epoch."""


def sequential_config() -> ConfigDict:
  """Defaults of the 'sequential' family (SASRec's paper settings)."""
  c = base_config()
  c.family = "sequential"
  c.data.name = "games"           # 'games', 'beauty', 'ml-100k', 'ml-1m'
  c.data.k_core = 0               # >1: k-core filter (the files are filtered)
  c.data.split = "loo-time"
  c.model = ConfigDict(dict(name="sasrec", max_len=50, dim=50, num_blocks=2,
                            num_heads=1, dropout=0.5, pre_ln=True,
                            sasrec_code=True,
                            row_groups=1))  # CPU speed only: models/sasrec.py
  c.optim = ConfigDict(dict(name="adam", learning_rate=0.001, b1=0.9,
                            b2=0.98, weight_decay=0.0, clip_norm=0.0,
                            schedule="constant", warmup_steps=0))
  c.train.loss = "bce"            # 'bce', 'softmax' (SASRec); 'masked'
  c.train.mask_prob = 0.6         # BERT4Rec rho
  c.train.mask_last_share = 0.1   # BERT4Rec rows that mask the last item
  c.train.mask_budget = 0         # masked positions per batch; 0 = auto
  c.train.sampled_negatives = 0   # >0: BERT4Rec softmax over K sampled items
  c.train.batch_size = 128
  c.train.epochs = 200            # the official code runs 201
  c.train.steps_per_call = 64
  c.train.log_every_steps = 2000
  c.eval.n_negatives = 100
  c.eval.negative_sampling = "uniform"
  c.eval.select = "{protocol}/NDCG@10"
  c.eval.valid_full = False
  c.eval.every_epochs = 5
  c.eval.patience = 4
  c.eval.ks = (1, 5, 10)
  c.eval.sampled_chunk_size = 2048
  c.eval.chunk_size = 512
  c.eval.widths = (8, 16, 32)      # input widths of the eval buckets
  return c


def get_config():
  return sequential_config()


def get_sweep():
  # 'paper' and 'softmax' rows: standard pre-LN blocks (sasrec_code False,
  # the default before the code layout was added).
  std = {"model.sasrec_code": False}
  runs = [dict(model="SASRec", variant="paper", seed=s, paper=PAPER,
               overrides=std) for s in SEEDS]
  # BERT4Rec with its paper's Beauty settings (Games is as sparse).
  runs.append(dict(model="BERT4Rec", variant="paper-beauty", seed=0,
                   overrides={
                       "model": dict(name="bert4rec", max_len=50, dim=64,
                                     num_blocks=2, num_heads=2, dropout=0.1),
                       "train.loss": "masked", "train.mask_prob": 0.6,
                       "train.batch_size": 256, "optim.name": "adamw",
                       "optim.learning_rate": 1e-4, "optim.b2": 0.999,
                       "optim.weight_decay": 0.01, "optim.clip_norm": 5.0,
                       "optim.schedule": "linear",
                       "optim.warmup_steps": 100}))
  # As on Beauty (bert4rec_beauty.py): the rate raised to 1e-3 and the
  # steps cut to a CPU budget.
  runs.append(dict(runs[-1], variant="paper-beauty,lr=1e-3", overrides={
      **runs[-1]["overrides"], "optim.learning_rate": 1e-3,
      "train.epochs": 16, "eval.every_epochs": 2}))
  # SASRec's paper settings but the cross-entropy over all items
  # (Klenitskiy & Vasilev, RecSys 2023) instead of BCE with one negative.
  runs += [dict(model="SASRec", variant="softmax", seed=s, paper=PAPER,
                overrides={"train.loss": "softmax", "train.epochs": 30, **std})
           for s in SEEDS]
  # The block layout of SASRec's released code (models/sasrec.py), with
  # the paper's BCE and with the softmax.
  runs += [dict(model="SASRec", variant="code", seed=s, paper=PAPER,
                overrides={"model.sasrec_code": True}) for s in SEEDS]
  # The same for all 200 epochs (no early stop; best validation epoch),
  # as the paper's fixed budget: the 'code' runs stopped at 110-160.
  runs += [dict(model="SASRec", variant="code,200-epochs", seed=s,
                paper=PAPER, overrides={"model.sasrec_code": True,
                                        "eval.patience": 0})
           for s in SEEDS]
  # Those runs peaked at epochs 180-200: continued to 300 (each resumed
  # from its epoch-200 checkpoint; constant rate, so the same run).
  runs += [dict(model="SASRec", variant="code,300-epochs", seed=s,
                paper=PAPER, overrides={"model.sasrec_code": True,
                                        "eval.patience": 0,
                                        "train.epochs": 300})
           for s in SEEDS]
  # Those best epochs (210, 265, 295) sat near the 300 cap: stopped by
  # validation instead, after 8 checks (40 epochs) without gain, cap 500.
  runs += [dict(model="SASRec", variant="code,patience-8", seed=s,
                paper=PAPER, overrides={"model.sasrec_code": True,
                                        "eval.patience": 8,
                                        "train.epochs": 500})
           for s in SEEDS]
  # 200 epochs, then a refit: a fresh model trains the best epoch count on
  # each sequence up to and including its validation item (the paper trains
  # without it), and test is read once from that model.
  runs += [dict(model="SASRec", variant="code,200-epochs,refit", seed=s,
                paper=PAPER, overrides={"model.sasrec_code": True,
                                        "eval.patience": 0,
                                        "train.refit": True})
           for s in SEEDS]
  runs += [dict(model="SASRec", variant="softmax,code", seed=s, paper=PAPER,
                overrides={"train.loss": "softmax", "train.epochs": 30,
                           "model.sasrec_code": True}) for s in SEEDS]
  # The 30-epoch runs peaked at their last epoch: the same with twice the cap.
  runs += [dict(model="SASRec", variant="softmax,epochs=60", seed=s,
                paper=PAPER,
                overrides={"train.loss": "softmax", "train.epochs": 60, **std})
           for s in SEEDS]
  return runs
