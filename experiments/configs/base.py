"""Defaults shared by the experiment configs (a helper, not an experiment).

Every field is documented here once; experiment files override a few.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0                      # model init, training negatives, step keys

  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic"       # 'synthetic', 'ml-100k', 'ml-1m'
  c.data.dir = ""                 # '' -> $JAXREC_DATA_DIR or ~/.cache/jaxrec
  c.data.download = False         # fetch the GroupLens archive if missing
  c.data.split = "loo-random"     # 'loo-time', 'loo-random', 'ratio'
  c.data.split_seed = 0           # fixed per dataset: same split, same negatives
  c.data.test_ratio = 0.2         # 'ratio' split only
  c.data.valid_ratio = 0.0        # 'ratio' split only; 0 = no validation
  c.data.synthetic = ml_collections.ConfigDict(
      dict(n_users=1000, n_items=500, dim=8, per_user=30, seed=0))

  c.model = ml_collections.ConfigDict()
  c.model.name = "mf"             # 'mf' or 'popularity'
  c.model.dim = 32
  c.model.use_bias = False
  c.model.init_std = 0.1

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"           # 'adam', 'adamw', 'adagrad', 'sgd'
  c.optim.learning_rate = 0.005
  c.optim.weight_decay = 0.0      # adamw only
  c.optim.clip_norm = 0.0         # 0 = no clipping
  # 'row_adam' ('row_sgd'): the same Adam (SGD), its embedding tables
  # stepped row-sparsely, Adam's by jaxrec.kernels (jaxrec/train/
  # row_sparse.py; MF and NCF models, the single and pmap launchers).
  c.optim.tables = "dense"

  c.train = ml_collections.ConfigDict()
  c.train.loss = "bce"            # 'bce' (pointwise) or 'bpr' (pairwise)
  c.train.negatives = 4           # sampled negatives per positive
  c.train.negative_sampling = "uniform"  # or 'popularity', 'uniform-all'
  c.train.l2 = 0.0                # per-row embedding L2 (bce and bpr)
  c.train.batch_size = 256
  c.train.epochs = 10
  c.train.steps_per_call = 64     # steps per device dispatch (lax.scan)
  c.train.launcher = "single"     # 'single', 'pmap', 'mesh'
  c.train.log_every_steps = 1000
  c.train.checkpoint_every_steps = 0  # 0 = at the end of each epoch only
  c.train.refit = False           # then retrain on train + valid, best epochs
  c.train.refit_epochs = 0        # >0: refit this many, skipping selection
  c.train.halt_after_steps = 0    # >0: stop there unsaved (resume tests)
  c.train.transfer_guard = "allow"  # 'disallow': fail on implicit transfers

  c.eval = ml_collections.ConfigDict()
  c.eval.every_epochs = 1
  c.eval.ks = (10,)
  c.eval.n_negatives = 99
  c.eval.negative_sampling = "uniform"  # or 'popularity' (BERT4Rec)
  c.eval.select = "full/NDCG@10"  # validation metric for best / early stop
  c.eval.valid_full = True        # False: validate on the sampled protocol
  c.eval.patience = 0             # evaluations without gain; 0 = off
  c.eval.chunk_size = 256         # users per full-ranking chunk
  c.eval.negatives_dir = ""       # '' -> <workdir>/eval_negatives
  c.eval.trace_test = False       # also log test each epoch: a leaky
                                  # diagnostic that never selects
  c.eval.select_role = "valid"    # 'test': select and stop on test, as
                                  # some papers' code does (leaky)
  return c
