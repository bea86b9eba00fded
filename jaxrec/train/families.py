"""Model families: `config.family` names the module that runs a config.

Each module exposes `train_and_evaluate(config, workdir) -> dict`; it is
imported only when used, so one family's dependencies never slow another.
"""

from __future__ import annotations

import importlib
from pathlib import Path

FAMILIES = {
    "ranking": "jaxrec.train.loop",        # MF, NCF: (user, item) scores
    "ctr": "jaxrec.train.ctr",             # LR, FM, FFM, DeepFM, Wide&Deep
    "sequential": "jaxrec.train.sequential",  # SASRec, BERT4Rec
    "session": "jaxrec.train.session",     # GRU4Rec, session baselines
    "retrieval": "jaxrec.train.retrieval",  # two-tower
}


def train_and_evaluate(config, workdir: str | Path) -> dict:
  """Runs `config` with its family's loop (default 'ranking')."""
  family = config.get("family", "ranking")
  if family not in FAMILIES:
    raise ValueError(f"unknown config.family {family!r}; expected one of "
                     f"{sorted(FAMILIES)}")
  module = importlib.import_module(FAMILIES[family])
  return module.train_and_evaluate(config, workdir)
