"""Trains and evaluates one experiment config.

  python -m experiments.main --config=experiments/configs/mf_synthetic.py \
      --workdir=/tmp/run --config.model.dim=16
"""

import json

from absl import app, flags
from ml_collections import config_flags

from jaxrec import checkpoint
from jaxrec.train.families import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.",
                               required=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Dataset root (else $JAXREC_DATA_DIR, else "
    "~/.cache/jaxrec).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join JAX's multi-host runtime first.")


def main(argv):
  del argv
  if _DISTRIBUTED.value:
    from jaxrec import parallel
    parallel.initialize_distributed()
  checkpoint.quiet_orbax_logs()
  config = _CONFIG.value
  if _DATA_DIR.value:
    config.data.dir = _DATA_DIR.value
  result = train_and_evaluate(config, _WORKDIR.value)
  print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
