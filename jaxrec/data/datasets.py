"""Named datasets and splits, as the experiment configs refer to them."""

from __future__ import annotations

import os

import numpy as np

from jaxrec.data import movielens, ncf, splits, synthetic
from jaxrec.data.download import default_data_dir
from jaxrec.data.interactions import Interactions

NAMES = ("synthetic", "ml-100k", "ml-1m", "ncf-ml1m")


def resolve_data_dir(data_dir: str = "") -> str:
  """`data_dir` if given, else $JAXREC_DATA_DIR, else ~/.cache/jaxrec."""
  return data_dir or os.fspath(default_data_dir())


def load(name: str, data_dir: str = "", *, download: bool = False,
         synthetic_kwargs: dict | None = None) -> Interactions:
  """Loads one of NAMES as int32 interactions."""
  if name == "synthetic":
    return synthetic.planted(**(synthetic_kwargs or {}))
  data_dir = resolve_data_dir(data_dir)
  if name == "ml-100k":
    return movielens.load_ml100k(data_dir, download=download)
  if name == "ml-1m":
    return movielens.load_ml1m(data_dir, download=download)
  raise ValueError(f"unknown dataset {name!r}; expected one of {NAMES}")


def split(data: Interactions, protocol: str, *, seed: int,
          test_ratio: float = 0.2, valid_ratio: float = 0.0) -> splits.Split:
  """'loo-time', 'loo-random' or 'ratio' (random per-user ratio split)."""
  if protocol == "loo-time":
    return splits.leave_one_out(data, by="time")
  if protocol == "loo-random":
    return splits.leave_one_out(data, by="random", seed=seed)
  if protocol == "ratio":
    return splits.ratio_split(data, test_ratio=test_ratio,
                              valid_ratio=valid_ratio, seed=seed)
  raise ValueError(f"unknown split {protocol!r}; expected 'loo-time', "
                   "'loo-random' or 'ratio'")


def load_split(config_data, seed: int
               ) -> tuple[splits.Split, np.ndarray | None]:
  """(split, fixed test negatives or None) for a `config.data` block.

  'ncf-ml1m' is the NCF paper's split with its own test negatives; every
  other dataset is loaded and split by `config_data.split`.
  """
  if config_data.name == "ncf-ml1m":
    return ncf.load_split(resolve_data_dir(config_data.dir), valid_seed=seed)
  data = load(config_data.name, config_data.dir,
              download=config_data.download,
              synthetic_kwargs=config_data.synthetic.to_dict())
  return split(data, config_data.split, seed=seed,
               test_ratio=config_data.get("test_ratio", 0.2),
               valid_ratio=config_data.get("valid_ratio", 0.0)), None
