"""Row-sparse exact Adam (and SGD): the CPU kernel and the train step
built on it are dense Adam (optax's), to float32 rounding, and fail
clearly."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs.base import base_config
from jaxrec import kernels, parallel
from jaxrec.kernels import blas
from jaxrec.models import ncf
from jaxrec.models.mf import MF
from jaxrec.train import loop, row_sparse, setup, step, tasks
from jaxrec.train.loop import train_and_evaluate

SHAPES = ((300, 24), (50, 7), (700, 1))     # rows x dim; odd widths on purpose


def _sparse_batches(rng, steps, n_ids=40):
  """Per step and table: ids drawn from a narrow range (many repeats, and
  rows the step misses) and their per-lookup gradients."""
  for _ in range(steps):
    yield [(rng.integers(0, rows // 2, n_ids),
            rng.normal(0, 1, (n_ids, dim)).astype(np.float32))
           for rows, dim in SHAPES]


def test_kernel_is_dense_adam_including_rows_the_step_missed():
  rng = np.random.default_rng(0)
  tables = [rng.normal(0, 0.1, s).astype(np.float32) for s in SHAPES]
  opt = optax.adam(0.01)
  ref, ref_state = list(tables), opt.init(list(tables))
  p = [jnp.asarray(t) for t in tables]
  m = [jnp.zeros(s) for s in SHAPES]
  v = [jnp.zeros(s) for s in SHAPES]
  update = jax.jit(kernels.row_adam, donate_argnums=(0, 1, 2))
  seen = [set() for _ in SHAPES]                # rows touched before
  for t, batch in enumerate(_sparse_batches(rng, 12)):
    earlier = [set(x) for x in seen]
    for k, (ids, _) in enumerate(batch):
      seen[k].update(ids.tolist())
    dense = [np.zeros(s, np.float32) for s in SHAPES]
    for d, (ids, g) in zip(dense, batch):
      np.add.at(d, ids, g)
    u, ref_state = opt.update(dense, ref_state, ref)
    before, ref = ref, optax.apply_updates(ref, u)
    assert any(len(set(ids)) < len(ids) for ids, _ in batch)  # repeats
    ids, grads = ([jnp.asarray(b[i]) for b in batch] for i in (0, 1))
    p, m, v = update(p, m, v, ids, grads, jnp.int32(t), 0.01)
  for k, (rows, _) in enumerate(SHAPES):
    np.testing.assert_allclose(p[k], ref[k], rtol=1e-5, atol=2e-8)
    np.testing.assert_allclose(m[k], ref_state[0].mu[k], rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(v[k], ref_state[0].nu[k], rtol=1e-5,
                               atol=1e-9)
    # The last step missed these rows, yet dense Adam moved them (a lazy,
    # touched-rows-only Adam would not have), and so did the kernel.
    missed = np.setdiff1d(sorted(earlier[k]), batch[k][0])
    assert missed.size
    assert np.all(before[k][missed] != ref[k][missed])
    np.testing.assert_allclose(p[k][missed], ref[k][missed], rtol=1e-5,
                               atol=2e-8)
    # Rows no step ever touched have zero moments and never move.
    np.testing.assert_array_equal(p[k][rows // 2:], tables[k][rows // 2:])


def test_kernel_matches_the_formula_other_backends_run():
  """The kernel (which sums repeated ids itself) against rows_and_slots +
  row_adam_jnp, the path of other backends: ids repeated up to 4 times,
  out of range (dropped by both), and every row once (a dense
  parameter's form)."""
  rng = np.random.default_rng(1)
  rows, dim = 64, 9
  p, m = (jnp.asarray(rng.normal(0, 0.1, (rows, dim)), jnp.float32)
          for _ in range(2))
  v = jnp.asarray(rng.uniform(0, 0.01, (rows, dim)), jnp.float32)
  count, lr = jnp.int32(5), 0.003
  step_size, inv = kernels.coefficients(count, lr, 0.9, 0.999)
  repeated = np.concatenate([rng.integers(0, 20, 24), [5, 5, 5, 5]])
  for ids in (repeated, np.concatenate([repeated, [rows, rows + 3]]),
              np.arange(rows)):
    ids = jnp.asarray(ids, jnp.int32)
    # multiples of 1/8: sums of repeated rows are exact in any order
    g = jnp.asarray(rng.integers(-16, 17, (ids.shape[0], dim)) / 8,
                    jnp.float32)
    slot, summed = kernels.rows_and_slots(ids, g, rows)
    want = kernels.row_adam_jnp(p, m, v, slot, summed, step_size, inv, 0.9,
                                0.999, 1e-8)
    got = jax.jit(kernels.row_adam)([p], [m], [v], [ids], [g], count, lr)
    # atol: a float32 ulp of the moments' operands (up to ~0.5), where b1 m
    # and (1 - b1) g cancel: the kernel's arithmetic is contracted to FMAs,
    # XLA's is not (the kernel at f2b9f3a, before it summed repeats, showed
    # the same 3e-8 on these inputs).
    for a, b in zip(got, want):
      np.testing.assert_allclose(a[0], b, rtol=2e-6, atol=3e-8)


def _batches(kind, rng, n_users, n_items, size=32):
  ids = lambda n: rng.integers(1, n + 1, size).astype(np.int32)
  if kind == "pointwise":
    return {"user": ids(n_users), "item": ids(n_items),
            "label": rng.integers(0, 2, size).astype(np.float32)}
  return {"user": ids(n_users), "pos": ids(n_items), "neg": ids(n_items)}


@pytest.mark.parametrize("model,loss,kind,optimizer", [
    (ncf.NeuMF(n_users=50, n_items=40, factors=8), tasks.pointwise_loss,
     "pointwise", "adam"),
    (ncf.MLP(n_users=50, n_items=40, factors=8), tasks.pointwise_loss,
     "pointwise", "adam"),
    (MF(n_users=50, n_items=40, dim=8, use_bias=True),
     functools.partial(tasks.pairwise_loss, l2=0.01), "pairwise", "adam"),
    (ncf.NeuMF(n_users=50, n_items=40, factors=8), tasks.pointwise_loss,
     "pointwise", "sgd"),
    (MF(n_users=50, n_items=40, dim=8, use_bias=True),
     functools.partial(tasks.pairwise_loss, l2=0.01), "pairwise", "sgd"),
    # The penalty looks each table up a second time.
    (ncf.NeuMF(n_users=50, n_items=40, factors=8),
     functools.partial(tasks.pointwise_loss, l2=0.01), "pointwise", "adam"),
    (ncf.GMF(n_users=50, n_items=40, factors=8),
     functools.partial(tasks.pointwise_loss, l2=0.01), "pointwise", "sgd"),
])
def test_row_sparse_step_is_the_dense_step(model, loss, kind, optimizer):
  lr = 0.01 if optimizer == "adam" else 0.5     # SGD needs a bigger step
  tx = {"adam": optax.adam, "sgd": optax.sgd}[optimizer](lr)
  state = setup.create_state(model, tx, jax.random.key(0))
  dense = jax.jit(step.make_train_step(loss))
  rows = jax.jit(row_sparse.make_train_step(model, loss, lr,
                                            optimizer=optimizer))
  a = b = state
  rng = np.random.default_rng(0)
  for _ in range(8):
    batch = _batches(kind, rng, 50, 40)
    a, ma = dense(a, batch, jax.random.key(1))
    b, mb = rows(b, batch, jax.random.key(1))
    np.testing.assert_allclose(mb["loss"], ma["loss"], rtol=1e-5)
  assert jax.tree.structure(b) == jax.tree.structure(a)
  assert int(b.step) == int(a.step) == 8
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4,
                                                       atol=1e-6),
               (b.params, b.opt_state), (a.params, a.opt_state))
  # The tables moved 100x the tolerance above, so the comparison sees their
  # step (BPR's user and global biases cancel: zero gradient, not checked).
  for name, table in b.params.items():
    if name.endswith("_embed"):
      assert float(jnp.max(jnp.abs(table["embedding"] - state.params[name][
          "embedding"]))) > 100 * 1e-6, name


@pytest.mark.parametrize("matmul", [
    "xla", pytest.param("blas", marks=pytest.mark.skipif(
        not blas.available(), reason="MKL not installed"))])
def test_pmap_row_adam_is_the_single_device_step(matmul, monkeypatch):
  """8 devices, each with 8 of the batch's 64 rows, make the step one
  device makes on all 64: same tables, moments and dense layers (also with
  the tower's products on MKL, 8 devices calling the kernel at once)."""
  assert len(jax.local_devices()) == 8          # tests/conftest.py
  monkeypatch.setattr(blas, "MIN_FLOPS", 0)     # these products are small
  model = ncf.NeuMF(n_users=50, n_items=40, factors=8, matmul=matmul)
  loss = tasks.pointwise_loss
  make = functools.partial(row_sparse.make_train_step, model, loss, 0.01)
  rng = np.random.default_rng(0)
  steps = [_batches("pointwise", rng, 50, 40, size=64) for _ in range(6)]
  batches = {k: np.stack([b[k] for b in steps]) for k in steps[0]}
  out = {}
  for kind in ("single", "pmap"):
    launcher = parallel.make_launcher(kind, loss, 64, make_step=make)
    state = launcher.put_state(setup.create_state(model, optax.adam(0.01),
                                                  jax.random.key(0)))
    state, metrics = launcher.run(state, launcher.put_batches(batches),
                                  jax.random.key(1))
    out[kind] = (launcher.get_state(state), metrics["loss"])
  (single, loss_1), (mapped, loss_8) = out["single"], out["pmap"]
  np.testing.assert_allclose(loss_8, loss_1, rtol=1e-5)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4,
                                                       atol=1e-6),
               (mapped.params, mapped.opt_state),
               (single.params, single.opt_state))
  with pytest.raises(ValueError, match="not 'mesh'"):
    parallel.make_launcher("mesh", loss, 64, make_step=make)


def test_row_sparse_refuses_what_it_cannot_step():
  with pytest.raises(ValueError, match="Dense"):
    row_sparse.make_train_step(nn.Dense(1), tasks.pointwise_loss, 0.01)
  model = ncf.GMF(n_users=5, n_items=4)
  sgd_state = setup.create_state(model, optax.sgd(0.01), jax.random.key(0))
  batch = _batches("pointwise", np.random.default_rng(0), 5, 4, size=4)
  with pytest.raises(ValueError, match="optax.adam"):
    row_sparse.make_train_step(model, tasks.pointwise_loss, 0.01)(
        sgd_state, batch, jax.random.key(0))
  momentum = setup.create_state(model, optax.sgd(0.01, momentum=0.9),
                                jax.random.key(0))
  with pytest.raises(ValueError, match="without momentum"):
    row_sparse.make_train_step(model, tasks.pointwise_loss, 0.01,
                               optimizer="sgd")(momentum, batch,
                                                jax.random.key(0))
  with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
    row_sparse.make_train_step(model, tasks.pointwise_loss, 0.01,
                               optimizer="adagrad")
  c = base_config()
  c.optim.tables = "rows"
  with pytest.raises(ValueError, match="unknown optim.tables 'rows'"):
    loop._tables_step(c.optim, model, tasks.pointwise_loss)
  c.optim.update(tables="row_adam", name="sgd")
  with pytest.raises(ValueError, match="needs optim.name='adam'"):
    loop._tables_step(c.optim, model, tasks.pointwise_loss)
  c.optim.update(tables="row_sgd", name="adam")
  with pytest.raises(ValueError, match="needs optim.name='sgd'"):
    loop._tables_step(c.optim, model, tasks.pointwise_loss)


def test_a_failed_build_names_the_compiler_and_its_output(tmp_path,
                                                          monkeypatch):
  monkeypatch.setenv("JAXREC_KERNEL_CACHE", str(tmp_path))
  monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
  with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
    kernels.library_path()
  monkeypatch.setenv("CXX", "false")
  with pytest.raises(RuntimeError, match="building row_adam.cc failed"):
    kernels.library_path()
  assert list(tmp_path.iterdir()) == []         # no half-written library


def _loop_config(**optim):
  c = base_config()
  c.data.synthetic.update(n_users=200, n_items=80, per_user=20, seed=0)
  c.model.dim = 8
  c.optim.update(learning_rate=0.01, **optim)
  c.train.update(epochs=2, batch_size=128, steps_per_call=8)
  c.eval.n_negatives = 30
  return c


def test_training_with_row_adam_reaches_the_dense_runs_numbers(tmp_path):
  dense = train_and_evaluate(_loop_config(), tmp_path / "dense")
  rows = train_and_evaluate(_loop_config(tables="row_adam"), tmp_path / "rows")
  for role in ("valid", "test"):
    for metric, value in dense[role].items():
      assert rows[role][metric] == pytest.approx(value, abs=2e-3), metric


def test_an_interrupted_row_adam_run_resumes_bit_identically(tmp_path):
  full = _loop_config(tables="row_adam")
  full.train.checkpoint_every_steps = 16
  whole = train_and_evaluate(full, tmp_path / "full")
  cut = _loop_config(tables="row_adam")
  cut.train.update(checkpoint_every_steps=16, halt_after_steps=40)
  assert train_and_evaluate(cut, tmp_path / "cut") == {}
  resumed = train_and_evaluate(full, tmp_path / "cut")
  assert resumed["test"] == whole["test"]
  assert resumed["valid"] == whole["valid"]
