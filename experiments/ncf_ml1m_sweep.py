"""The rows of experiments/configs/ncf_ml1m.py's sweep: NCF Table 2 and
Table 3's MLP-3 column at 8-64 predictive factors and 3 seeds, and one family
of variant rows per question asked of the gap to the paper (that config's
docstring lists the variant tags, the questions and their results files).

Each row is a dict for experiments.sweep: 'model' and 'variant' (the table's
labels), 'seed', dotted config 'overrides', and the paper's figures where the
paper has them.  NeuMF-pre rows name their GMF and MLP-3 halves' workdirs as
'{root}/<model>-<variant>-seed<N>', so a sweep runs the halves first.
"""

FACTORS = (8, 16, 32, 64)
LONG_EPOCHS = 60              # the '<F>,epochs=60' rows' cap
SEEDS = (0, 1, 2)
GRID_BATCHES = (128, 256, 512, 1024)  # the paper's tuning grid (§4.1)
GRID_RATES = (1e-4, 5e-4, 1e-3, 5e-3)
GRID_FACTORS = (8, 32, 64)    # where the sweep holds the whole grid
# (batch, lr) of the best validation NDCG@10 over the grid cells run at 64
# factors, seed 0 (results/ncf_ml1m_grid64.md).
TUNED = {"GMF": (128, 1e-3), "MLP-3": (128, 1e-3), "NeuMF": (128, 1e-3)}
# The same over the grid at 8 factors (results/ncf_ml1m_grid8.md); NeuMF-pre
# fine-tunes those GMF and MLP-3 runs in the '8,row-adam,grid8-tuned' rows.
TUNED8 = {"GMF": (1024, 1e-3), "MLP-3": (256, 1e-3), "NeuMF": (256, 5e-4)}
# Per-example embedding L2 (train.l2) tried on GMF at TUNED, 64 factors.
L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3)
L2_LONG = (1e-3, 1e-2)        # still rising at the 20-epoch cap with 1e-3
# (l2, epoch cap) of GMF's best validation NDCG@10 over those (seed 0):
# NeuMF-pre's GMF half in the '64,row-adam,tuned,gmf-l2=<l2>' rows.
GMF_L2 = (1e-3, LONG_EPOCHS)
# The same on MLP-3 (about 14 min a run at 64 factors, so two values, with
# the 20-epoch cap), and NeuMF-pre fine-tuning each with the TUNED GMF.
MLP_L2_GRID = (1e-4, 1e-3)
# NeuMF-pre's plain SGD on the tables, by a row-sparse scatter-add.
ROW_SGD = {"optim.tables": "row_sgd"}
PAPER = {
    "NeuMF-pre": {8: (.684, .403), 16: (.707, .426), 32: (.726, .445),
                  64: (.730, .447)},
    "NeuMF": {8: (.688, .410), 16: (.696, .420), 32: (.701, .425),
              64: (.705, .426)},
    "MLP-3": {8: (.671, .399), 16: (.684, .410), 32: (.692, .425),
              64: (.702, .426)},
}

def _paper(model, factors):
  hr, ndcg = PAPER.get(model, {}).get(factors, (None, None))
  return {"ncf-sampled-99": {"HR@10": hr, "NDCG@10": ndcg}} if hr else {}


def _run(model, variant, seed, factors, overrides):
  """One sweep entry; rows with a paper figure carry it."""
  paper = _paper(model, factors)
  return dict(model=model, variant=variant, seed=seed, overrides=overrides,
              **({"paper": paper} if paper else {}))


def _workdir(model, variant, seed):
  """An earlier run's workdir, for NeuMF-pre's pretrained halves."""
  return f"{{root}}/{model}-{variant}-seed{seed}"


def _gmf(factors, **extra):
  return {"model": {"name": "gmf", "factors": factors, **extra}}


def _mlp(factors, **extra):
  return {"model": {"name": "mlp", "factors": factors, "layers": 3, **extra}}


def _pretrained(factors, gmf, mlp, optimiser="sgd", lr=0.001):
  """NeuMF from the GMF and MLP-3 runs in workdirs gmf and mlp."""
  return {"model.factors": factors, "model.pretrained.gmf": gmf,
          "model.pretrained.mlp": mlp, "optim.name": optimiser,
          "optim.learning_rate": lr}


def _neumf(variant, seed, factors, extra):
  return _run("NeuMF", variant, seed, factors,
              {"model.factors": factors, **extra})


def _pre(variant, seed, factors, extra=None, gmf=None, mlp=None):
  """The NeuMF-pre row of `variant` (with `extra` overrides), fine-tuning
  the GMF and MLP-3 runs of variants `gmf` and `mlp` (default: `variant`)."""
  return _run("NeuMF-pre", variant, seed, factors, {**(extra or {}),
              **_pretrained(factors, _workdir("GMF", gmf or variant, seed),
                            _workdir("MLP-3", mlp or variant, seed))})


def _trio(variant, seed, factors, extra):
  """GMF, MLP-3 and NeuMF-pre rows of `variant`, each with the `extra`
  overrides; NeuMF-pre fine-tunes this variant's GMF and MLP-3 runs."""
  return [
      _run("GMF", variant, seed, factors, {**_gmf(factors), **extra}),
      _run("MLP-3", variant, seed, factors, {**_mlp(factors), **extra}),
      _pre(variant, seed, factors, extra)]


def _grid_variant(factors, batch, lr):
  return f"factors={factors},row-adam,batch={batch},lr={lr:g}"


def _fast(model, tag, seed, factors, batch, lr, extra=None):
  """A GMF, MLP-3 or NeuMF row at (batch, lr) on the fast path (row-sparse
  Adam, MKL's products: the plain rows' results within seed noise, see
  above), with `extra` overrides."""
  hyper = {"train.batch_size": batch, "optim.learning_rate": lr,
           "optim.tables": "row_adam", **(extra or {})}
  if model == "NeuMF":
    return _neumf(tag, seed, factors, {**hyper, "model.matmul": "blas"})
  arch = _gmf(factors) if model == "GMF" else _mlp(factors, matmul="blas")
  return _run(model, tag, seed, factors, {**arch, **hyper})


def _grid(seed, factors):
  """GMF, MLP-3 and NeuMF at every (batch, lr) of the paper's grid."""
  return [_fast(model, _grid_variant(factors, batch, lr), seed, factors,
                batch, lr)
          for batch in GRID_BATCHES for lr in GRID_RATES
          for model in ("GMF", "MLP-3", "NeuMF")]


def _l2_variant(model, factors, l2, epochs=None):
  tag = f"{_grid_variant(factors, *TUNED[model])},l2={l2:g}"
  return tag + (f",epochs={epochs}" if epochs else "")


def _l2_row(model, seed, factors, l2, epochs=None):
  """`model` at its TUNED (batch, lr) with train.l2 = l2 (and a cap)."""
  extra = {"train.l2": l2, **({"train.epochs": epochs} if epochs else {})}
  return _fast(model, _l2_variant(model, factors, l2, epochs), seed,
               factors, *TUNED[model], extra)


def _l2_grid(seed, factors):
  """GMF with each train.l2 of L2_GRID, and of L2_LONG with the
  LONG_EPOCHS cap; MLP-3 with each of MLP_L2_GRID; NeuMF-pre fine-tuning
  GMF_L2's GMF, and each MLP-3, beside the other TUNED half."""
  gmf = ([_l2_row("GMF", seed, factors, l2) for l2 in L2_GRID] +
         [_l2_row("GMF", seed, factors, l2, LONG_EPOCHS) for l2 in L2_LONG])
  mlp = [_l2_row("MLP-3", seed, factors, l2) for l2 in MLP_L2_GRID]
  pre = _tuned(seed, factors, f"tuned,gmf-l2={GMF_L2[0]:g}",
               gmf_variant=_l2_variant("GMF", factors, *GMF_L2))
  for l2 in MLP_L2_GRID:
    pre += _tuned(seed, factors, f"tuned,mlp-l2={l2:g}",
                  mlp_variant=_l2_variant("MLP-3", factors, l2))
  return gmf + mlp + pre


def _tuned(seed, factors, tag="tuned", gmf_variant=None, mlp_variant=None):
  """NeuMF-pre fine-tuned (plain SGD, row-sparse) from the GMF and MLP-3
  runs at the settings validation chose (TUNED): the grid's rows of that
  cell at 64 factors, get_sweep's TUNED rows at the others.  With
  `gmf_variant` (`mlp_variant`), that half is that variant's run instead."""
  cell = lambda model: _grid_variant(factors, *TUNED[model])  # noqa: E731
  return [_pre(f"factors={factors},row-adam,{tag}", seed, factors, ROW_SGD,
               gmf_variant or cell("GMF"), mlp_variant or cell("MLP-3"))]


def _glorot(seed, factors, cells):
  """MLP-3 and NeuMF at their `cells` (batch, lr: a grid's choices) with
  the tower's kernels drawn Glorot-uniform, as the authors' Keras code drew
  them; NeuMF-pre fine-tunes that MLP-3 with the GMF of its cell."""
  init = {"model.dense_init": "glorot_uniform"}
  tag = lambda model: _grid_variant(factors, *cells[model]) + ",glorot"
  return [_fast(model, tag(model), seed, factors, *cells[model], init)
          for model in ("MLP-3", "NeuMF")] + _tuned(
              seed, factors, f"grid{factors}-tuned,glorot",
              _grid_variant(factors, *cells["GMF"]), tag("MLP-3"))


def _paper_init(seed, factors):
  """GMF, MLP-3 and NeuMF on the fast path with every weight matrix, the
  tower's and the output layer's too, drawn N(0, 0.01^2) (paper §4.1:
  "model parameters" from a Gaussian of standard deviation 0.01); NeuMF-pre
  fine-tunes that GMF and MLP-3, its weights all copied from them."""
  tag = f"factors={factors},row-adam,paper-init"
  kernel = {"optim.tables": "row_adam"}
  gmf = _gmf(factors, out_init="normal")
  mlp = _mlp(factors, matmul="blas_fused", dense_init="normal",
             out_init="normal")
  neumf = {"model.matmul": "blas_fused", "model.dense_init": "normal",
           "model.out_init": "normal"}
  return [_run("GMF", tag, seed, factors, {**gmf, **kernel}),
          _run("MLP-3", tag, seed, factors, {**mlp, **kernel}),
          _neumf(tag, seed, factors, {**kernel, **neumf}),
          _pre(tag, seed, factors, ROW_SGD)]


def get_sweep():
  runs = []
  for factors in FACTORS:
    for seed in SEEDS:
      variant = f"factors={factors}"
      gmf = _workdir("GMF", variant, seed)
      mlp = _workdir("MLP-3", variant, seed)
      runs += [_run("GMF", variant, seed, factors, _gmf(factors)),
               _run("MLP-3", variant, seed, factors, _mlp(factors)),
               _neumf(variant, seed, factors, {})]
      # NeuMF-pre: plain SGD as the paper's text says; SGD at 0.005, the
      # largest rate of the paper's grid, since 0.001 barely moves it; Adam
      # at lr 0.001 as the authors' README runs it (`--learner adam`); Adam
      # at 1e-4, the gentler step for 64 factors, whose best epoch at 1e-3
      # is the 1st.
      for optimiser, lr, tag in (("sgd", 0.001, ""),
                                 ("sgd", 0.005, ",sgd-lr=5e-3"),
                                 ("adam", 0.001, ",adam-finetune"),
                                 ("adam", 0.0001, ",adam-finetune,lr=1e-4")):
        runs.append(_run("NeuMF-pre", variant + tag, seed, factors,
                         _pretrained(factors, gmf, mlp, optimiser, lr)))
      # A longer budget: the released code's default is 100 epochs, and at
      # 8 and 16 factors GMF and MLP-3 often peak at the 20-epoch cap.
      # Early stopping (patience 4) still ends a run once it stops gaining.
      long = f"{variant},epochs={LONG_EPOCHS}"
      epochs = {"train.epochs": LONG_EPOCHS}
      runs += _trio(long, seed, factors, epochs) + [
          _neumf(long, seed, factors, epochs)]
      # The released code's MLP embeddings (half its layers[0], twice the
      # paper's text: models/ncf.py embed_dim); GMF is unchanged.
      code = f"{variant},code-embed"
      embed = {"model.embed_dim": factors * 4}
      runs += [
          _run("MLP-3", code, seed, factors,
               _mlp(factors, embed_dim=factors * 4)),
          _neumf(code, seed, factors, embed),
          _pre(code, seed, factors, embed, gmf=variant)]
      # Refit: the epoch count chosen on validation as above, then the
      # model retrained on train + validation (the released code's training
      # set) and test read once; NeuMF-pre's second phase fine-tunes its
      # halves' refits (train/loop.py).  Phase 1 is the plain row's run.
      refit = f"{variant},refit"
      again = {"train.refit": True}
      runs += _trio(refit, seed, factors, again) + [
          _neumf(refit, seed, factors, again)]
      # The plain rows again, with test also evaluated after every epoch
      # (eval.trace_test), for the released code's reading: its best test
      # HR over epochs.  Training and selection are the plain rows'.
      trace = f"{variant},test-trace"
      traced = {"eval.trace_test": True}
      runs += _trio(trace, seed, factors, traced) + [
          _neumf(trace, seed, factors, traced)]
      # The plain rows again with the tables stepped row-sparsely: Adam's by
      # the CPU kernel (optim.tables='row_adam'), NeuMF-pre's plain SGD by
      # a scatter-add ('row_sgd').  The same optimisers to float32
      # rounding, so these should match the plain rows within seed noise.
      rows = f"{variant},row-adam"
      kernel = {"optim.tables": "row_adam"}
      runs += [_run("GMF", rows, seed, factors, {**_gmf(factors), **kernel}),
               _run("MLP-3", rows, seed, factors, {**_mlp(factors), **kernel}),
               _neumf(rows, seed, factors, kernel),
               _pre(rows, seed, factors, ROW_SGD)]
      # The same with the towers' products by MKL's sgemm as well
      # (model.matmul='blas', jaxrec.kernels.blas): the fastest set-up on a
      # CPU; the same products to float32 rounding.
      fast = f"{variant},row-adam,blas"
      blas = {**kernel, "model.matmul": "blas"}
      runs += [_run("MLP-3", fast, seed, factors,
                    {**_mlp(factors, matmul="blas"), **kernel}),
               _neumf(fast, seed, factors, blas)]
      # That path in mixed precision: the towers' products in bfloat16
      # (model.matmul='blas_bf16': MKL's bfloat16 products, AMX where the
      # CPU has it; float32 parameters, activations and accumulation), to
      # check that the bench's fastest step trains the same models.
      mixed = f"{variant},row-adam,blas-bf16"
      runs += [_run("MLP-3", mixed, seed, factors,
                    {**_mlp(factors, matmul="blas_bf16"), **kernel}),
               _neumf(mixed, seed, factors,
                      {**kernel, "model.matmul": "blas_bf16"})]
      # Float32 with each tower's forward and backward pass one MKL kernel
      # call (model.matmul='blas_fused', jaxrec.kernels.tower): the bench's
      # fastest float32 step, to check that it trains the same models.
      fused = f"{variant},row-adam,blas-fused"
      runs += [_run("MLP-3", fused, seed, factors,
                    {**_mlp(factors, matmul="blas_fused"), **kernel}),
               _neumf(fused, seed, factors,
                      {**kernel, "model.matmul": "blas_fused"})]
      # The released code's MLP widths on that path, and NeuMF-pre from
      # them with the row-adam GMF ('code-embed' above is the plain path,
      # too slow at 32 and 64 factors on a 2-core CPU).
      code_fast = f"{fast},code-embed"
      runs += [_run("MLP-3", code_fast, seed, factors, {
                   **_mlp(factors, matmul="blas", embed_dim=factors * 4),
                   **kernel}),
               _pre(code_fast, seed, factors, {**ROW_SGD, **embed}, gmf=rows)]
      # The released code's whole reading (eval.select_role='test', leaky):
      # GMF, MLP-3 and NeuMF-pre each keep their epoch of best test HR@10,
      # and NeuMF-pre starts from the GMF and MLP-3 so chosen, as the
      # authors' pre-training files were saved.  Not a result of ours.
      leak = f"{variant},select-on-test"
      on_test = {"eval.select_role": "test",
                 "eval.select": "ncf-sampled-99/HR@10"}
      runs += _trio(leak, seed, factors, on_test)
      # The paper tuned batch and learning rate per model over GRID_*;
      # here at GRID_FACTORS, read on validation (sweep --roles=valid).
      # At the other factors, the TUNED cells alone, and NeuMF-pre from them.
      if factors in GRID_FACTORS:
        runs += _grid(seed, factors)
      else:
        runs += [_fast(model, _grid_variant(factors, *TUNED[model]), seed,
                       factors, *TUNED[model])
                 for model in ("GMF", "MLP-3", "NeuMF")]
      if factors == 64:
        runs += _l2_grid(seed, factors)
      runs += _tuned(seed, factors)
      if factors == 8:
        runs += _tuned(seed, factors, "grid8-tuned",
                       _grid_variant(factors, *TUNED8["GMF"]),
                       _grid_variant(factors, *TUNED8["MLP-3"]))
        runs += _glorot(seed, factors, TUNED8)
      runs += _paper_init(seed, factors)
  return runs
