"""MF-BCE on planted synthetic data: the README demo, no download needed.

Command:
  python -m experiments.main --config=experiments/configs/mf_synthetic.py \
      --workdir=/tmp/jaxrec/mf_synthetic
Runtime: about 10-20 s on a 2-core CPU (training a few seconds).
Expected: MF far above popularity on both protocols (see tests/test_train.py).
"""

from experiments.configs.base import base_config


def get_config():
  c = base_config()
  c.data.name = "synthetic"
  c.train.epochs = 10
  c.train.batch_size = 512
  return c
