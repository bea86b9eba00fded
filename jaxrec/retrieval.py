"""FAISS indexes over item embeddings: exact, IVF and HNSW inner product.

An `ItemIndex` holds the vectors of items 1..n (id 0, padding, is never
indexed or returned) and answers top-K maximum-inner-product queries with
each user's seen items removed.  Exclusion over-fetches: a query with s
seen items asks FAISS for K + s neighbours, drops the seen ones and keeps
the first K, so with exact search the answer equals a full ranking with
the seen items masked.  Flat and IVF indexes move to the GPU when FAISS
sees one (`faiss.get_num_gpus() > 0`); HNSW has no GPU version and stays
on the CPU.

Legend: N = indexed items, D = dim, Q = queries, K = results per query,
W = padded width of a per-query exclusion list.
"""

from __future__ import annotations

import dataclasses

import faiss
import numpy as np

KINDS = ("flat", "ivf", "hnsw")


@dataclasses.dataclass(frozen=True)
class IndexConfig:
  """How to build and search an index.

  Attributes:
    kind: 'flat' (exact), 'ivf' (inverted lists over k-means cells) or
      'hnsw' (graph).
    nlist: IVF cells; 0 = 4 * sqrt(N), FAISS's usual rule.
    nprobe: IVF cells visited per query.
    hnsw_m: HNSW neighbours per node.
    ef_construction: HNSW build beam width.
    ef_search: HNSW search beam width (raised to K + W when smaller).
    train_size: IVF k-means sample (0 = all vectors).
    use_gpu: None = when FAISS sees a GPU; False = CPU.
  """

  kind: str = "flat"
  nlist: int = 0
  nprobe: int = 16
  hnsw_m: int = 32
  ef_construction: int = 80
  ef_search: int = 64
  train_size: int = 0
  use_gpu: bool | None = None


def gpu_available() -> bool:
  return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def build(vectors: np.ndarray, config: IndexConfig = IndexConfig(),
          seed: int = 0) -> faiss.Index:
  """A trained, filled inner-product index over rows of `vectors` (N, D)."""
  if config.kind not in KINDS:
    raise ValueError(f"unknown index kind {config.kind!r}; expected one of "
                     f"{KINDS}")
  x = np.ascontiguousarray(vectors, np.float32)
  if x.ndim != 2 or not x.shape[0]:
    raise ValueError(f"vectors must be (N, D) with N >= 1; got {x.shape}")
  n, d = x.shape
  ip = faiss.METRIC_INNER_PRODUCT
  if config.kind == "flat":
    index = faiss.IndexFlatIP(d)
  elif config.kind == "ivf":
    nlist = config.nlist or max(1, int(4 * np.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, ip)
    index.cp.seed = seed
    sample = x
    if config.train_size and config.train_size < n:
      rows = np.random.default_rng(seed).choice(n, config.train_size,
                                                replace=False)
      sample = x[np.sort(rows)]
    index.train(sample)
    index.nprobe = config.nprobe
  else:
    index = faiss.IndexHNSWFlat(d, config.hnsw_m, ip)
    index.hnsw.efConstruction = config.ef_construction
    index.hnsw.efSearch = config.ef_search
  use_gpu = gpu_available() if config.use_gpu is None else config.use_gpu
  if use_gpu and config.kind != "hnsw":
    index = faiss.index_cpu_to_all_gpus(index)
  index.add(x)
  return index


def set_search_params(index: faiss.Index, *, nprobe: int | None = None,
                      ef_search: int | None = None) -> None:
  """Changes nprobe (IVF) or efSearch (HNSW) of a built index in place."""
  space = (faiss.GpuParameterSpace() if "Gpu" in type(index).__name__
           else faiss.ParameterSpace())
  if nprobe is not None:
    space.set_index_parameter(index, "nprobe", int(nprobe))
  if ef_search is not None:
    space.set_index_parameter(index, "efSearch", int(ef_search))


class ItemIndex:
  """Top-K items by inner product, ids 1..n, with seen items excluded.

  Attributes:
    index: the FAISS index; row r holds item r + 1.
    n_items: number of indexed items.
  """

  def __init__(self, item_vectors: np.ndarray,
               config: IndexConfig = IndexConfig(), seed: int = 0):
    """item_vectors: (n_items + 1, D); row 0 (padding) is left out."""
    item_vectors = np.asarray(item_vectors, np.float32)
    self.config = config
    self.n_items = item_vectors.shape[0] - 1
    self.index = build(item_vectors[1:], config, seed)

  def search(self, queries: np.ndarray, k: int,
             exclude: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k unseen items per query.

    Args:
      queries: (Q, D) float user vectors.
      k: results per query (at most n_items minus the query's exclusions).
      exclude: (Q, W) int item ids to leave out, padded with 0, or None.

    Returns:
      (scores (Q, k) float32, items (Q, k) int32), best first; where fewer
      than k items qualify (an approximate index may find too few), the
      tail holds item 0 with score -inf.
    """
    q = np.ascontiguousarray(queries, np.float32)
    width = 0 if exclude is None else exclude.shape[1]
    fetch = min(k + width, self.n_items)
    if self.config.kind == "hnsw" and self.index.hnsw.efSearch < fetch:
      set_search_params(self.index, ef_search=fetch)
    scores, labels = self.index.search(q, fetch)
    items = np.where(labels >= 0, labels + 1, 0).astype(np.int32)
    drop = items == 0
    if width:
      drop |= _contains(exclude, items)
    return _first_k(scores, items, drop, k)


def _contains(lists: np.ndarray, items: np.ndarray) -> np.ndarray:
  """(Q, F) bool: items[q, j] is in lists[q] (padding 0 never matches)."""
  keys = np.sort(lists, axis=1)
  # Row-wise searchsorted by offsetting each row into its own range.
  big = np.int64(max(int(keys.max(initial=0)), int(items.max(initial=0))) + 1)
  offset = np.arange(keys.shape[0], dtype=np.int64)[:, None] * big
  flat = (keys + offset).ravel()
  probe = items + offset
  pos = np.minimum(np.searchsorted(flat, probe), flat.size - 1)
  return (flat[pos] == probe) & (items != 0)


def _first_k(scores: np.ndarray, items: np.ndarray, drop: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
  """The first k kept columns of each row (rows are already best-first)."""
  order = np.argsort(drop, axis=1, kind="stable")[:, :k]
  scores = np.take_along_axis(scores, order, 1).astype(np.float32)
  items = np.take_along_axis(items, order, 1)
  gone = np.take_along_axis(drop, order, 1)
  if k > order.shape[1]:
    pad = k - order.shape[1]
    scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    items = np.pad(items, ((0, 0), (0, pad)))
    gone = np.pad(gone, ((0, 0), (0, pad)), constant_values=True)
  return np.where(gone, -np.inf, scores), np.where(gone, 0, items)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
  """Mean over queries of |found_q ∩ exact_q| / K; both (Q, K) ids.

  Ids < 0 or padding 0 in `found` never count.
  """
  found, exact = np.asarray(found), np.asarray(exact)
  if found.shape != exact.shape:
    raise ValueError(f"found {found.shape} and exact {exact.shape} differ")
  hit = (found[:, :, None] == exact[:, None, :]).any(-1) & (found > 0)
  return float(hit.sum(1).mean() / found.shape[1])


def exclusion_lists(indptr: np.ndarray, items: np.ndarray,
                    rows: np.ndarray) -> np.ndarray:
  """(len(rows), W) int32 CSR rows `rows`, right-padded with 0."""
  indptr = np.asarray(indptr, np.int64)
  lens = indptr[rows + 1] - indptr[rows]
  out = np.zeros((rows.size, max(int(lens.max(initial=0)), 1)), np.int32)
  r = np.repeat(np.arange(rows.size), lens)
  starts = np.repeat(indptr[rows], lens)
  c = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
  out[r, c] = items[starts + c]
  return out
