"""Plain PyTorch peers of jaxrec's SASRec and BERT4Rec at bench_seq's shapes
(scripts/seq_steps.py): the same layers, initialisers, losses and optimisers,
eager, one Python step per batch.  Needs the `bench` extra (torch).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from seq_steps import MAX_LEN, N_ITEMS, SPECS, batches  # noqa: E402


class Block(nn.Module):
  """layers.TransformerBlock: MHA and FF, each with dropout, residual, LN."""

  def __init__(self, d, heads, ff, dropout, pre_ln, act, eps):
    super().__init__()
    self.attn = nn.MultiheadAttention(d, heads, dropout=dropout,
                                      batch_first=True)
    self.ff = nn.Sequential(nn.Linear(d, ff), act, nn.Dropout(dropout),
                            nn.Linear(ff, d))
    self.ln_attn, self.ln_ff = nn.LayerNorm(d, eps), nn.LayerNorm(d, eps)
    self.drop, self.pre_ln = nn.Dropout(dropout), pre_ln

  def forward(self, x, causal_mask=None):
    def attend(h):
      return self.attn(h, h, h, attn_mask=causal_mask, need_weights=False,
                       is_causal=causal_mask is not None)[0]
    if self.pre_ln:
      x = x + self.drop(attend(self.ln_attn(x)))
      return x + self.drop(self.ff(self.ln_ff(x)))
    x = self.ln_attn(x + self.drop(attend(x)))
    return self.ln_ff(x + self.drop(self.ff(x)))


class TorchSASRec(nn.Module):
  """models/sasrec.py: embeddings * sqrt(D) + positions, pre-LN ReLU blocks
  with FF width D, padding zeroed after each block, final LN."""

  def __init__(self, dim, num_blocks, num_heads, dropout, **_):
    super().__init__()
    self.item = nn.Embedding(N_ITEMS + 1, dim)
    self.pos = nn.Embedding(MAX_LEN, dim)
    self.drop, self.dim = nn.Dropout(dropout), dim
    self.blocks = nn.ModuleList(
        Block(dim, num_heads, dim, dropout, True, nn.ReLU(), 1e-8)
        for _ in range(num_blocks))
    self.final_ln = nn.LayerNorm(dim, 1e-8)
    causal = torch.ones(MAX_LEN, MAX_LEN, dtype=torch.bool).triu(1)
    self.register_buffer("causal", causal, persistent=False)
    for p in self.parameters():
      if p.dim() == 2:
        nn.init.xavier_uniform_(p)

  def loss(self, seq, pos, neg):
    valid = (seq != 0).unsqueeze(-1).float()
    x = self.item(seq) * self.dim ** 0.5 + self.pos.weight
    x = self.drop(x) * valid
    for block in self.blocks:
      x = block(x, self.causal) * valid
    h = self.final_ln(x)
    pl, nl = (h * self.item(pos)).sum(-1), (h * self.item(neg)).sum(-1)
    w = (pos != 0).float()
    per = (F.binary_cross_entropy_with_logits(pl, torch.ones_like(pl),
                                              reduction="none")
           + F.binary_cross_entropy_with_logits(nl, torch.zeros_like(nl),
                                                reduction="none"))
    return (per * w).sum() / w.sum().clamp(min=1)


class TorchBERT4Rec(nn.Module):
  """models/bert4rec.py: embeddings + positions, LN, post-LN GELU blocks
  with FF width 4D, output transform (dense, GELU, LN), shared table + bias;
  softmax over ids 0..n_items (padding excluded) at the masked positions."""

  def __init__(self, dim, num_blocks, num_heads, dropout, **_):
    super().__init__()
    self.item = nn.Embedding(N_ITEMS + 2, dim)
    self.pos = nn.Embedding(MAX_LEN, dim)
    self.embed_ln, self.drop = nn.LayerNorm(dim, 1e-12), nn.Dropout(dropout)
    gelu = nn.GELU(approximate="tanh")  # flax's nn.gelu default
    self.blocks = nn.ModuleList(
        Block(dim, num_heads, 4 * dim, dropout, False, gelu, 1e-12)
        for _ in range(num_blocks))
    self.transform = nn.Sequential(nn.Linear(dim, dim), gelu,
                                   nn.LayerNorm(dim, 1e-12))
    self.output_bias = nn.Parameter(torch.zeros(N_ITEMS + 2))
    for p in self.parameters():
      if p.dim() == 2:
        nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)

  def loss(self, seq, positions, labels):
    x = self.drop(self.embed_ln(self.item(seq) + self.pos.weight))
    for block in self.blocks:
      x = block(x)
    out = self.transform(x).reshape(-1, x.shape[-1])[positions]     # (M, D)
    logits = (out @ self.item.weight[:N_ITEMS + 1].T
              + self.output_bias[:N_ITEMS + 1])
    logits[:, 0] = -torch.inf                   # padding is never an answer
    return F.cross_entropy(logits, labels)


def torch_runner(name, batch, steps, threads):
  """(run, sequences per call, params): eager PyTorch on the same batches
  with `threads` intra-op threads, warmed up and checked finite."""
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  spec = SPECS[name]
  model = {"SASRec": TorchSASRec, "BERT4Rec": TorchBERT4Rec}[name](
      **spec["model"])
  n_params = sum(p.numel() for p in model.parameters())
  o = spec["optim"]
  if o["name"] == "adam":
    opt = torch.optim.Adam(model.parameters(), lr=o["learning_rate"],
                           betas=(o["b1"], o["b2"]))
  else:  # no decay on biases and norm scales (the 1-d parameters)
    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2]},
              {"params": [p for p in model.parameters() if p.dim() < 2],
               "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=o["learning_rate"],
                            betas=(o["b1"], o["b2"]),
                            weight_decay=o["weight_decay"])
  data = batches(name, steps, batch)
  t = lambda k, s: torch.from_numpy(data[k][s]).long()
  if name == "SASRec":
    inputs = [(t("seq", s), t("pos", s), t("neg", s)) for s in range(steps)]
  else:  # only the real masks (the JAX step also computes the unused slots)
    keep = [data["weights"][s] > 0 for s in range(steps)]
    inputs = [(t("seq", s), t("positions", s)[keep[s]],
               t("labels", s)[keep[s]]) for s in range(steps)]
  box = {}

  def run():
    torch.set_num_threads(threads)  # the runners take turns
    for args in inputs:
      opt.zero_grad(set_to_none=True)
      loss = model.loss(*args)
      loss.backward()
      if o["clip_norm"]:
        nn.utils.clip_grad_norm_(model.parameters(), o["clip_norm"])
      opt.step()
    box["loss"] = loss.item()

  run()  # warm-up; sanity before timing
  assert np.isfinite(box["loss"]), (name, box["loss"])
  print(f"{name} torch {threads}T: loss {box['loss']:.4f}", flush=True)
  return run, steps * batch, n_params
