"""Checks of the Frappe encoding and negative sampler against the files.

Each function returns plain figures (ints, floats) that
`scripts/build_frappe_train.py` prints and `jaxrec/data/README.md` quotes.

Legend: R = raw log rows, L = libfm lines, F = 10 fields.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from jaxrec.data import frappe
from jaxrec.data.frappe import Encoding


def file_checks(raw_ids: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                enc: Encoding) -> dict:
  """Figures for one libfm file (labels (L,), ids (L, F)) against the log."""
  pos, neg = ids[labels == 1], ids[labels == -1]
  inside = (ids >= enc.offsets) & (ids < enc.offsets + enc.sizes)
  logged_contexts = np.unique(frappe.context_keys(raw_ids, enc))
  pairs = _pair_keys(neg, enc)
  return {
      "lines": int(len(ids)),
      "positives": int(len(pos)),
      "negatives": int(len(neg)),
      "positive_rate": float(len(pos) / len(ids)),
      "lines_with_every_id_in_its_field": int(inside.all(1).sum()),
      "id_range_per_field": {f: [int(ids[:, j].min()), int(ids[:, j].max())]
                             for j, f in enumerate(frappe.FIELDS)},
      "positives_found_in_log": int(len(pos) - frappe.multiset_missing(
          frappe.row_keys(raw_ids, enc), frappe.row_keys(pos, enc))),
      "negatives_with_logged_user_context": int(np.isin(
          frappe.context_keys(neg, enc), logged_contexts).sum()),
      "negatives_with_item_logged_by_user": int(np.isin(
          pairs, _pair_keys(raw_ids, enc)).sum()),
      "negatives_repeating_a_user_item": int(pairs.size - np.unique(
          pairs).size),
  }


def union_checks(raw_ids: np.ndarray, files: dict[str, tuple[np.ndarray,
                                                             np.ndarray]],
                 enc: Encoding) -> dict:
  """Figures for all files together (the rebuilt train with valid/test)."""
  labels = np.concatenate([f[0] for f in files.values()])
  ids = np.concatenate([f[1] for f in files.values()])
  pos, neg = ids[labels == 1], ids[labels == -1]
  raw_keys, pos_keys = (frappe.row_keys(x, enc) for x in (raw_ids, pos))
  contexts, logged = np.unique(frappe.context_keys(raw_ids, enc),
                               return_counts=True)
  neg_contexts = frappe.context_keys(neg, enc)
  at = np.minimum(np.searchsorted(contexts, neg_contexts), contexts.size - 1)
  owed = frappe.NEGATIVES_PER_LOG * logged
  got = np.bincount(at[contexts[at] == neg_contexts], minlength=contexts.size)
  pairs = _pair_keys(neg, enc)
  names = list(files)
  line_keys = {n: frappe.row_keys(f[1], enc) * 2 + (f[0] == 1)
               for n, f in files.items()}
  return {
      "lines": int(len(ids)),
      "positive_rate": float(len(pos) / len(ids)),
      "log_rows_missing_from_positives": frappe.multiset_missing(
          pos_keys, raw_keys),
      "positives_missing_from_log": frappe.multiset_missing(
          raw_keys, pos_keys),
      "contexts_without_2_negatives_per_log": int((got != owed).sum()),
      "negatives_with_item_logged_by_user": int(np.isin(
          pairs, _pair_keys(raw_ids, enc)).sum()),
      "negatives_repeating_a_user_item": int(pairs.size - np.unique(
          pairs).size),
      "shared_lines": {f"{a}&{b}": int(np.isin(line_keys[a],
                                               line_keys[b]).sum())
                       for i, a in enumerate(names) for b in names[i + 1:]},
  }


def pinned_ids(raw_ids: np.ndarray, positives: np.ndarray,
               enc: Encoding) -> dict[str, int]:
  """Per field, how many ids no other numbering of that field could take.

  Holding the other 9 fields' numbering, a positive line can only match a
  log row with its other 9 fields, so its id of field f must name one of
  those rows' values of f.  An id's candidates are the values allowed by
  every positive carrying it; values pinned to one id are struck from the
  others' candidates until nothing changes.  An id left with one candidate,
  equal to its value under `enc`, is pinned (a different candidate would
  contradict `enc` and raises).
  """
  out = {}
  for f, name in enumerate(frappe.FIELDS):
    raw_blank, pos_blank = raw_ids.copy(), positives.copy()
    raw_blank[:, f] = pos_blank[:, f] = enc.offsets[f]
    raw_pairs = np.unique(np.column_stack(
        [frappe.row_keys(raw_blank, enc), raw_ids[:, f]]), axis=0)
    pos_keys = frappe.row_keys(pos_blank, enc)
    lo = np.searchsorted(raw_pairs[:, 0], pos_keys, "left")
    n = np.searchsorted(raw_pairs[:, 0], pos_keys, "right") - lo
    line = np.repeat(np.arange(len(positives)), n)
    value = raw_pairs[np.repeat(lo - np.cumsum(n) + n, n)
                      + np.arange(n.sum()), 1]
    ids, lines_per_id = np.unique(positives[:, f], return_counts=True)
    cand, votes = np.unique(np.column_stack(
        [positives[line, f], value]), axis=0, return_counts=True)
    need = lines_per_id[np.searchsorted(ids, cand[:, 0])]
    cand = cand[votes == need]  # allowed by every line with that id
    while True:
      count = np.bincount(cand[:, 0] - enc.offsets[f], minlength=enc.sizes[f])
      single = count[cand[:, 0] - enc.offsets[f]] == 1
      taken = np.isin(cand[:, 1], cand[single, 1]) & ~single
      if not taken.any():
        break
      cand = cand[~taken]
    pinned = cand[single]
    if (pinned[:, 0] != pinned[:, 1]).any():
      raise ValueError(f"field {name}: the positives force a numbering "
                       "other than the given encoding")
    out[name] = int(single.sum())
  return out


def sampler_alternatives(raw_ids: np.ndarray, labels: np.ndarray,
                         ids: np.ndarray, enc: Encoding) -> dict:
  """What other negative samplers would have produced on these lines.

  Expected counts of negatives whose item the user logged, if items were
  drawn from all items or from those the user did not log in that context;
  expected repeated (user, item) negatives if each were drawn independently
  from the user's unlogged items; and a chi-square test of the negative
  items against uniform over each user's unlogged items.
  """
  n_items = int(enc.sizes[frappe.ITEM])
  neg = ids[labels == -1]
  logged = np.unique(_pair_keys(raw_ids, enc))
  user_of, item_of = np.divmod(logged, n_items)
  n_logged = np.bincount(user_of, minlength=enc.sizes[frappe.USER])
  users = neg[:, frappe.USER] - enc.offsets[frappe.USER]
  free = n_items - n_logged
  # items the user logged in the negative's own context
  context_items = np.unique(np.column_stack(
      [frappe.context_keys(raw_ids, enc), raw_ids[:, frappe.ITEM]]), axis=0)
  keys, per_context = np.unique(context_items[:, 0], return_counts=True)
  in_context = per_context[np.searchsorted(keys, frappe.context_keys(
      neg, enc))]
  per_user = np.bincount(users, minlength=free.size)
  rate = per_user / np.maximum(free, 1)
  expected = rate.sum() - np.bincount(item_of, rate[user_of], n_items)
  observed = np.bincount(neg[:, frappe.ITEM] - enc.offsets[frappe.ITEM],
                         minlength=n_items)
  test = stats.chisquare(observed, expected * observed.sum() / expected.sum())
  return {
      "expected_logged_item_hits_if_drawn_from_all_items": float(
          (n_logged[users] / n_items).sum()),
      "expected_logged_item_hits_if_only_context_items_excluded": float(
          ((n_logged[users] - in_context) / (n_items - in_context)).sum()),
      "expected_user_item_repeats_if_drawn_independently": float(
          (per_user * (per_user - 1) / 2 / np.maximum(free, 1)).sum()),
      "negative_item_chi2_vs_uniform_unlogged": float(test.statistic),
      "negative_item_chi2_dof": n_items - 1,
      "negative_item_chi2_p": float(test.pvalue),
  }


def split_figures(raw_ids: np.ndarray, files: dict[str, tuple[np.ndarray,
                                                              np.ndarray]],
                  enc: Encoding) -> dict:
  """How the shipped lines were shuffled and split, and what a negative's
  context is.

  A key logged once owes 2 negatives; if lines were cut at random, the
  number of them in these files is Binomial(2, share of lines here).
  """
  labels = np.concatenate([f[0] for f in files.values()])
  ids = np.concatenate([f[1] for f in files.values()])
  neg = ids[labels == -1]
  contexts, logged = np.unique(frappe.context_keys(raw_ids, enc),
                               return_counts=True)
  at = np.searchsorted(contexts, frappe.context_keys(neg, enc))
  here = np.bincount(at, minlength=contexts.size)[logged == 1]
  share = len(ids) / (len(raw_ids) * (1 + frappe.NEGATIVES_PER_LOG))
  expected = here.size * stats.binom.pmf(np.arange(3), 2, share)
  item_cost = np.zeros(enc.sizes[frappe.ITEM], np.int64)
  cost = frappe.FIELDS.index("cost")
  item_cost[raw_ids[:, frappe.ITEM] - enc.offsets[frappe.ITEM]] = raw_ids[
      :, cost]
  costs = np.unique(raw_ids[:, [frappe.ITEM, cost]], axis=0)
  out = {f"{n}_adjacent_lines_same_user": float(np.mean(
      f[1][1:, frappe.USER] == f[1][:-1, frappe.USER]))
         for n, f in files.items()}
  out.update({f"{n}_positive_after_positive": float(np.mean(
      f[0][1:][f[0][:-1] == 1] == 1)) for n, f in files.items()})
  out.update({
      "keys_logged_once_with_0_1_2_negatives_here": np.bincount(
          here, minlength=3).tolist(),
      "binomial_expectation": np.round(expected, 1).tolist(),
      "items_with_more_than_one_cost": int(len(costs) - np.unique(
          costs[:, 0]).size),
      "negatives_whose_cost_is_their_items_cost": float(np.mean(
          item_cost[neg[:, frappe.ITEM] - enc.offsets[frappe.ITEM]]
          == neg[:, cost])),
  })
  return out


def _pair_keys(ids: np.ndarray, enc: Encoding) -> np.ndarray:
  """(L,) int64 key of each line's (user, item)."""
  local = ids[:, [frappe.USER, frappe.ITEM]] - enc.offsets[[frappe.USER,
                                                            frappe.ITEM]]
  return local[:, 0] * int(enc.sizes[frappe.ITEM]) + local[:, 1]


def report(folder, train_path=None) -> dict:
  """Every check on the shipped files, and on a rebuilt train file if given.

  Args:
    folder: the `frappe/` folder (`frappe.frappe_folder`).
    train_path: a rebuilt `frappe.train.libfm`, or None.
  """
  raw = frappe.read_raw(folder / frappe.RAW)
  files = {"valid": frappe.read_libfm(folder / frappe.VALID),
           "test": frappe.read_libfm(folder / frappe.TEST)}
  positives = np.concatenate([ids[labels == 1]
                              for labels, ids in files.values()])
  enc, rule = frappe.infer_encoding(raw, positives)
  raw_ids = enc.encode(raw)
  shipped = [np.concatenate(x) for x in zip(*files.values())]
  out = {
      "log_rows": int(len(raw)),
      "log_rows_repeating_an_earlier_row": int(
          len(raw) - np.unique(frappe.row_keys(raw_ids, enc)).size),
      "encoding": {
          "rule": rule, "n_features": enc.n_features,
          "fields": {f: {"offset": int(o), "size": int(s)}
                     for f, o, s in zip(frappe.FIELDS, enc.offsets,
                                        enc.sizes)},
          "context_values": {f: list(v) for f, v in zip(frappe.FIELDS[2:8],
                                                        enc.vocabs[2:8])},
          "pinned_ids": pinned_ids(raw_ids, positives, enc),
          "ids_in_valid_test_positives": {
              f: int(np.unique(positives[:, j]).size)
              for j, f in enumerate(frappe.FIELDS)},
      },
      "files": {n: file_checks(raw_ids, *f, enc) for n, f in files.items()},
      "valid_test_sampler": sampler_alternatives(raw_ids, *shipped, enc),
      "valid_test_split": split_figures(raw_ids, files, enc),
  }
  if train_path is not None:
    files = {"train": frappe.read_libfm(train_path), **files}
    out["files"]["train"] = file_checks(raw_ids, *files["train"], enc)
    out["train_sampler"] = sampler_alternatives(raw_ids, *files["train"], enc)
    out["all_files"] = union_checks(raw_ids, files, enc)
  return out
