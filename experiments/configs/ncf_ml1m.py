"""NCF (He et al., WWW 2017) on MovieLens-1M under the paper's protocol.

Split: the authors' test item per user with their 99 test negatives
(`ncf-ml1m`, see jaxrec/data/ncf.py); one random training interaction per
user held out for validation; 4 uniform negatives per positive re-drawn each
epoch; BCE; Adam lr 0.001; batch 256; best epoch by validation NDCG@10
under the sampled protocol.
NeuMF with pre-training starts from this sweep's GMF and MLP runs of the same
factors and seed, and is fine-tuned with plain SGD (paper §3.4.1).

One run (NeuMF, 8 factors, no pre-training):
  python -m experiments.main --config=experiments/configs/ncf_ml1m.py \
      --workdir=runs/ncf_neumf8
The table (every row of NCF Table 2 and Table 3's MLP-3, 3 seeds):
  python -m experiments.sweep --config=experiments/configs/ncf_ml1m.py \
      --workdir=runs/ncf_ml1m --name=ncf_ml1m
Runtime on a 2-core CPU, alone, at batch 256: about 5-10 s an epoch at 8
factors; at 64 factors about 10 s (GMF), 60 s (MLP-3) and 60 s (NeuMF) with
the plain optimiser, 5, 30 and 35 s with optim.tables='row_adam'.

Besides the plain rows, get_sweep holds one family of variant rows per
question asked of the gap to the paper.  Each family's table is in
results/ncf_ml1m_<file>.md, with its command in the header and its reading
at the end; results/ncf_ml1m_all.md (scripts/summarise_ncf.py) gathers
every row.  The rows are built in experiments/ncf_ml1m_sweep.py.  Variant tag: question
(files):
  factors=<F>: the paper's set-up (ncf_ml1m, factors32, factors64)
  <F>,code-embed: the released code's MLP widths (code_embed)
  <F>,sgd-lr=5e-3: a larger fine-tuning rate (sgd_lr)
  <F>,adam-finetune[,lr=1e-4]: Adam fine-tuning, as the authors' README
      runs it (adam_finetune)
  <F>,epochs=60: a longer budget (epochs60)
  <F>,refit: retrain on train + validation (refit)
  <F>,row-adam[,blas]: the fast CPU path, to check it changes nothing
      (row_adam, row_adam_blas); <F>,row-adam,blas,code-embed: the
      released code's MLP widths on it (code_embed32)
  <F>,row-adam,blas-bf16: that path with bfloat16 products, the bench's
      fastest step, to check that it trains the same models (blas_bf16)
  <F>,row-adam,blas-fused: that path in float32 with each tower one
      kernel call each way, the same check (blas_fused)
  <F>,test-trace and <F>,select-on-test: the released code's leaky reading
      of test (test_trace, select_on_test)
  <F>,row-adam,batch=<B>,lr=<L>: the paper's tuning grid, whole at
      GRID_FACTORS (grid64, grid8, grid32), its TUNED cell elsewhere
      (tuned<F>)
  <F>,row-adam,tuned: NeuMF-pre from the TUNED halves (tuned<F>);
      8,row-adam,grid8-tuned: from the TUNED8 halves (grid8_tuned)
  8,row-adam,...,glorot: the authors' Keras initialiser for the tower's
      kernels (glorot8)
  64,...,l2=<x> and 64,row-adam,tuned,{gmf,mlp}-l2=<x>: embedding L2 on
      the halves (gmf_l2_grid, gmf_l2, mlp_l2_grid, mlp_l2)
  <F>,row-adam,paper-init: every weight matrix drawn N(0, 0.01^2), as
      the paper's text says, not only the embeddings (paper_init)
None of them brings NeuMF-pre-64 to the paper's .730/.447: the best row
is .7157/.4401 (tuned, results/ncf_ml1m_gmf_l2.md), and even the leaky
select-on-test reading gives .7166/.4364.

Paper, HR@10 / NDCG@10 (factors 8, 16, 32, 64):
  NeuMF with pre-training:    .684/.403 .707/.426 .726/.445 .730/.447
  NeuMF without pre-training: .688/.410 .696/.420 .701/.425 .705/.426
  MLP-3 (Table 3):            .671/.399 .684/.410 .692/.425 .702/.426
"""

from ml_collections import ConfigDict

from experiments.configs.base import base_config
from experiments.ncf_ml1m_sweep import get_sweep  # noqa: F401  (the rows)

NOTES = """NCF protocol (SPEC §2): the authors' test item and 99 test negatives per
user (ncf-sampled-99); full = ranking over all 3,706 items with the user's
training and validation items masked. Validation = one random training
interaction per user against 99 frozen uniform negatives; best epoch by
validation sampled NDCG@10; test evaluated once, on that epoch."""


def get_config():
  c = base_config()
  c.data.name = "ncf-ml1m"
  c.model = ConfigDict({"name": "neumf", "factors": 8, "layers": 3,
                        "embed_dim": 0,  # 0: the paper's F * 2^(L-1) / 2
                        "matmul": "xla",  # the 'blas*' ones need '.[mkl]'
                        "dense_init": "lecun_normal",  # the tower's kernels
                        "out_init": "lecun_normal",  # the output layer's
                        "tower_dtype": "float32",  # or 'bfloat16'
                        "pretrained": {"gmf": "", "mlp": "", "alpha": 0.5}})
  c.optim.name = "adam"
  c.optim.learning_rate = 0.001
  c.train.loss = "bce"
  c.train.negatives = 4
  c.train.batch_size = 256
  c.train.epochs = 20
  c.train.steps_per_call = 256
  c.train.log_every_steps = 5000
  c.eval.patience = 4
  # Full ranking scores all 22M user-item pairs through the MLP tower (about
  # a minute for NeuMF-64 here), so validation uses the paper's sampled
  # protocol; test reports both.
  c.eval.valid_full = False
  c.eval.select = "ncf-sampled-99/NDCG@10"
  return c
