"""Neural collaborative filtering: GMF, MLP and NeuMF.

He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017.

  GMF:   y = h^T (p_u * q_i)
  MLP:   y = h^T tower([p_u, q_i])      (ReLU tower, widths halving)
  NeuMF: y = h^T [p_u^G * q_i^G, tower([p_u^M, q_i^M])]  (separate embeddings)

All return logits; the sigmoid lives in the loss.  Predictive factors F:
MLP with L layers has embeddings F * 2^(L-1) / 2 wide and a tower of widths
F * 2^(L-1), ..., F (F=8, L=3: embeddings 16, tower 32-16-8, as in §4.1).
`embed_dim` overrides the MLP embedding width: the authors' released code
builds embeddings half its `layers[0]`, e.g. 32 for `--layers
[64,32,16,8]` at F=8, twice the paper's text (`embed_dim=F * 2^(L-1)`).
`matmul='blas'` makes the towers' products with Intel MKL's sgemm
(jaxrec.kernels.blas): the same products, to float32 rounding, faster
on a CPU.  `matmul='blas_bf16'` makes them bfloat16 products accumulated
in float32 (MKL's cblas_gemm_bf16bf16f32, AMX tiles where the CPU has
them), every array staying float32.  `matmul='blas_fused'` runs the whole
float32 tower, forward and backward, in one MKL kernel call each way
(jaxrec.kernels.tower): the fastest float32 step on a CPU.
`l2_penalty` is the per-example L2 of a row's embeddings (train.l2), the
regularisation the authors' README says GMF and MLP may need at large
predictive factors before pre-training NeuMF.
Deviations: MLP-0 (no hidden layer) uses embeddings F wide so that its
output layer sees 2F inputs; initialisers are Flax's (normal(0.01) for
embeddings as in the paper, LeCun-normal for dense layers).  `dense_init`
names the tower's kernel initialiser instead: 'glorot_uniform' is the one
the authors' Keras code used (Keras's default); `out_init` names the
output layer's.  With both 'normal' every weight matrix starts N(0, 0.01^2),
the paper's text (§4.1: "model parameters" drawn from a Gaussian of mean 0
and standard deviation 0.01).  `tower_dtype='bfloat16'`
runs the tower in mixed precision (float32 parameters, bfloat16 products);
the output layer stays float32 (its inputs are promoted).

Legend: B = batch, N = candidates, F = predictive factors.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.models.layers import Tower, initializer, pair_grid, row_sum_sq

_EMBED_INIT = nn.initializers.normal(0.01)


def tower_widths(factors: int, layers: int) -> tuple[int, ...]:
  """(F * 2^(L-1), ..., F): the MLP tower of L layers ending in F."""
  return tuple(factors * 2 ** (layers - 1 - i) for i in range(layers))


def mlp_embed_dim(factors: int, layers: int) -> int:
  return factors * 2 ** (layers - 1) // 2 if layers else factors


def _embed(n: int, dim: int) -> nn.Embed:
  return nn.Embed(n + 1, dim, embedding_init=_EMBED_INIT)


def _output(init: str) -> nn.Dense:
  """The output layer h (bias included), its kernel drawn by `init`."""
  return nn.Dense(1, kernel_init=initializer(init, "out_init"))


def _pair_l2(user_embed, item_embed, users, items):
  """(B,) squared norm of each row's user embedding plus its items' (items
  (B,) or (B, K), every one counted): the per-example L2 of train.l2."""
  return row_sum_sq(user_embed(users)) + row_sum_sq(item_embed(items))


class GMF(nn.Module):
  n_users: int
  n_items: int
  factors: int = 8
  out_init: str = "lecun_normal"   # the output layer's kernel

  def setup(self):
    self.user_embed = _embed(self.n_users, self.factors)
    self.item_embed = _embed(self.n_items, self.factors)
    self.out = _output(self.out_init)

  def __call__(self, users, items, train: bool = False):
    """Logits (B,) for users (B,), items (B,)."""
    return self.out(self.user_embed(users) * self.item_embed(items))[:, 0]

  def score(self, users, candidates):
    """Logits (B, N) for users (B,) and candidates (N,) or (B, N)."""
    p = self.user_embed(users)                              # (B, F)
    q = self.item_embed(candidates)                         # (N|B,N, F)
    pq = p[:, None, :] * (q[None] if candidates.ndim == 1 else q)
    return self.out(pq)[..., 0]

  def l2_penalty(self, users, items):
    """(B,) for users (B,), items (B,) or (B, K): see `_pair_l2`."""
    return _pair_l2(self.user_embed, self.item_embed, users, items)


class MLP(nn.Module):
  n_users: int
  n_items: int
  factors: int = 8
  layers: int = 3
  embed_dim: int = 0        # MLP embedding width; 0 = mlp_embed_dim(F, L)
  matmul: str = "xla"       # 'xla', 'blas', 'blas_bf16', 'blas_fused'
  dense_init: str = "lecun_normal"  # the tower's kernels (Tower.kernel_init)
  out_init: str = "lecun_normal"    # the output layer's kernel
  tower_dtype: str = "float32"     # e.g. 'bfloat16' (Tower.dtype)

  def setup(self):
    dim = self.embed_dim or mlp_embed_dim(self.factors, self.layers)
    self.user_embed = _embed(self.n_users, dim)
    self.item_embed = _embed(self.n_items, dim)
    self.tower = Tower(tower_widths(self.factors, self.layers),
                       matmul=self.matmul, kernel_init=self.dense_init,
                       dtype=self.tower_dtype)
    self.out = _output(self.out_init)

  def __call__(self, users, items, train: bool = False):
    """Logits (B,) for users (B,), items (B,)."""
    return self.out(self.hidden(users, items))[:, 0]

  def hidden(self, users, items):
    """(B, F): the tower's output for pairs."""
    return self.tower.concatenated(
        [self.user_embed(users), self.item_embed(items)])

  def hidden_grid(self, users, candidates):
    """(B, N, F) for users (B,) and candidates (N,) or (B, N)."""
    if candidates.ndim == 2 or not self.layers:
      u, i = pair_grid(users, candidates)
      return self.hidden(u.reshape(-1), i.reshape(-1)).reshape(
          u.shape + (-1,))
    h = self.tower.first_layer_grid(self.user_embed(users),
                                    self.item_embed(candidates))
    return self.tower.after_first(h)

  def score(self, users, candidates):
    """Logits (B, N) for users (B,) and candidates (N,) or (B, N)."""
    return self.out(self.hidden_grid(users, candidates))[..., 0]

  def l2_penalty(self, users, items):
    """(B,) for users (B,), items (B,) or (B, K): see `_pair_l2` (the
    tower is not penalised)."""
    return _pair_l2(self.user_embed, self.item_embed, users, items)


class NeuMF(nn.Module):
  n_users: int
  n_items: int
  factors: int = 8
  layers: int = 3
  embed_dim: int = 0        # MLP embedding width; 0 = mlp_embed_dim(F, L)
  matmul: str = "xla"       # 'xla', 'blas', 'blas_bf16', 'blas_fused'
  dense_init: str = "lecun_normal"  # the tower's kernels (Tower.kernel_init)
  out_init: str = "lecun_normal"    # the output layer's kernel
  tower_dtype: str = "float32"     # e.g. 'bfloat16' (Tower.dtype)

  def setup(self):
    dim = self.embed_dim or mlp_embed_dim(self.factors, self.layers)
    self.gmf_user_embed = _embed(self.n_users, self.factors)
    self.gmf_item_embed = _embed(self.n_items, self.factors)
    self.mlp_user_embed = _embed(self.n_users, dim)
    self.mlp_item_embed = _embed(self.n_items, dim)
    self.tower = Tower(tower_widths(self.factors, self.layers),
                       matmul=self.matmul, kernel_init=self.dense_init,
                       dtype=self.tower_dtype)
    self.out = _output(self.out_init)

  def __call__(self, users, items, train: bool = False):
    """Logits (B,) for users (B,), items (B,)."""
    gmf = self.gmf_user_embed(users) * self.gmf_item_embed(items)
    mlp = self.tower.concatenated(
        [self.mlp_user_embed(users), self.mlp_item_embed(items)])
    return self.out(jnp.concatenate([gmf, mlp], axis=-1))[:, 0]

  def score(self, users, candidates):
    """Logits (B, N) for users (B,) and candidates (N,) or (B, N)."""
    if candidates.ndim == 2 or not self.layers:
      u, i = pair_grid(users, candidates)
      return self(u.reshape(-1), i.reshape(-1)).reshape(u.shape)
    gmf = (self.gmf_user_embed(users)[:, None, :] *
           self.gmf_item_embed(candidates)[None, :, :])     # (B, N, F)
    mlp = self.tower.after_first(self.tower.first_layer_grid(
        self.mlp_user_embed(users), self.mlp_item_embed(candidates)))
    return self.out(jnp.concatenate([gmf, mlp], axis=-1))[..., 0]

  def l2_penalty(self, users, items):
    """(B,) `_pair_l2` of GMF's embeddings plus that of MLP's."""
    return (_pair_l2(self.gmf_user_embed, self.gmf_item_embed, users, items)
            + _pair_l2(self.mlp_user_embed, self.mlp_item_embed, users,
                       items))


def neumf_from_pretrained(gmf_params: dict, mlp_params: dict,
                          alpha: float = 0.5) -> dict:
  """NeuMF parameters from trained GMF and MLP ones (paper §3.4.1).

  Embeddings and the tower are copied; the output layer is the
  concatenation [alpha * h_GMF, (1 - alpha) * h_MLP], with the bias mixed
  the same way.
  """
  out = {
      "kernel": jnp.concatenate([alpha * gmf_params["out"]["kernel"],
                                 (1 - alpha) * mlp_params["out"]["kernel"]],
                                axis=0),
      "bias": (alpha * gmf_params["out"]["bias"] +
               (1 - alpha) * mlp_params["out"]["bias"])}
  return {"gmf_user_embed": gmf_params["user_embed"],
          "gmf_item_embed": gmf_params["item_embed"],
          "mlp_user_embed": mlp_params["user_embed"],
          "mlp_item_embed": mlp_params["item_embed"],
          "tower": mlp_params["tower"], "out": out}
