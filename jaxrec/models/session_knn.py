"""Session baseline: item-kNN on session co-occurrence (popularity is
`jaxrec.models.popularity`).

Legend: N = sessions, I = n_items + 1 (id 0 is padding), B = batch rows.

Item-kNN is the baseline of the GRU4Rec papers (Hidasi et al., ICLR 2016;
`CoOccurence`/`Cosine` in hidasib/GRU4Rec's baselines.py), found strong on
session data by Ludewig & Jannach (2018): the next item is predicted from
the current item alone, by

  sim(i, j) = co(i, j) / ((supp_i + lambda)^alpha (supp_j + lambda)^(1-alpha))

where co(i, j) = sum over sessions of count_i * count_j (i != j) and supp is
an item's number of events; each row keeps its `n_sims` largest entries
(the rest score 0).  alpha = 0.5 is the cosine; lambda shrinks the
similarity of rare items.  Here co is one sparse product C^T C of the
session-by-item count matrix instead of a Python loop over items.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from jaxrec.data.sessions import Sessions


def session_item_matrix(sessions: Sessions) -> sp.csr_matrix:
  """(N, I) event counts of each item in each session."""
  rows = np.repeat(np.arange(sessions.n_sessions), sessions.lengths())
  data = np.ones(sessions.n_events, np.float64)
  return sp.csr_matrix((data, (rows, sessions.items)),
                       shape=(sessions.n_sessions, sessions.n_items + 1))


def item_knn(sessions: Sessions, n_sims: int = 100, lmbd: float = 20.0,
             alpha: float = 0.5) -> np.ndarray:
  """(I, I) float32 similarities; row i scores next items after item i.

  Dense on purpose: the evaluation looks up rows on device.  That is
  I^2 floats (35 MB for 3,000 items); larger catalogues need a sparse
  top-n table instead.
  """
  c = session_item_matrix(sessions)
  co = (c.T @ c).toarray()
  np.fill_diagonal(co, 0.0)
  supp = np.asarray(c.sum(axis=0)).ravel()
  norm = ((supp[:, None] + lmbd) ** alpha
          * (supp[None, :] + lmbd) ** (1.0 - alpha))
  sims = np.divide(co, norm, out=np.zeros_like(co), where=norm > 0)
  if n_sims and n_sims < sims.shape[1]:
    # Keep each row's n_sims largest; ties at the cut are all kept.
    kth = -np.partition(-sims, n_sims - 1, axis=1)[:, n_sims - 1:n_sims]
    sims = np.where(sims >= kth, sims, 0.0)
  sims[:, 0] = 0.0
  return sims.astype(np.float32)


def table_scores(table: jnp.ndarray, inputs: jnp.ndarray) -> jnp.ndarray:
  """(B, I) scores of a next-item table (I, I) for inputs (B,)."""
  return table[inputs]

