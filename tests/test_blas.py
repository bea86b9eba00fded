"""The MKL matmul kernel (jaxrec.kernels.blas) is the product lax computes,
forward and backward, in every transpose form and at the sizes it splits
over cores, and the NCF towers that use it are the same models."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from jaxrec import kernels, parallel
from jaxrec.kernels import blas, build, tower
from jaxrec.models import matmul, ncf
from jaxrec.train import setup, tasks

pytestmark = pytest.mark.skipif(
    not blas.available(), reason="MKL not installed (pip install -e '.[mkl]')")

DENSE = (((2,), (0,)), ((), ()))


@pytest.fixture(autouse=True)
def kernel_for_every_size(monkeypatch):
  """Small shapes keep these tests fast: let them reach the kernel too
  (test_small_products_stay_on_lax checks the size rule itself); the same
  for the fused tower (tests/test_tower.py)."""
  monkeypatch.setattr(blas, "MIN_FLOPS", 0)
  monkeypatch.setattr(tower, "MIN_FLOPS", 0)


def _rand(key, shape, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(key), shape, dtype)


@pytest.mark.parametrize("m,k,n", [
    (37, 53, 29),        # one core (below the split size)
    (301, 200, 151),     # split over the cores, an odd row count
    (5, 0, 4),           # empty contraction: zeros
    (0, 6, 3),           # no rows
])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_is_the_float64_product(m, k, n, transpose_a, transpose_b):
  rng = np.random.default_rng(0)
  a = rng.normal(size=(m, k)).astype(np.float32)
  b = rng.normal(size=(k, n)).astype(np.float32)
  got = kernels.matmul(jnp.asarray(a.T if transpose_a else a),
                       jnp.asarray(b.T if transpose_b else b),
                       transpose_a=transpose_a, transpose_b=transpose_b)
  assert got.shape == (m, n)
  want = a.astype(np.float64) @ b.astype(np.float64)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def _bf16(x):
  """x rounded to bfloat16 (to nearest even), as float64."""
  return np.asarray(jnp.asarray(x).astype(jnp.bfloat16), np.float64)


@pytest.mark.parametrize("m,k,n", [
    (37, 53, 29),        # one core
    (512, 256, 256),     # 2^26 FLOPs: split over the cores
    (5, 0, 4),           # empty contraction: zeros
])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_bf16_matmul_is_the_product_of_the_rounded_inputs(
    m, k, n, transpose_a, transpose_b):
  """bf16=True: float32 in and out, the exact product of the inputs
  rounded to bfloat16 as JAX rounds them, accumulated in float32."""
  rng = np.random.default_rng(1)
  a = rng.normal(size=(m, k)).astype(np.float32)
  b = rng.normal(size=(k, n)).astype(np.float32)
  got = kernels.matmul(jnp.asarray(a.T if transpose_a else a),
                       jnp.asarray(b.T if transpose_b else b),
                       transpose_a=transpose_a, transpose_b=transpose_b,
                       bf16=True)
  assert got.shape == (m, n) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, _bf16(a) @ _bf16(b), rtol=1e-5, atol=1e-4)
  if k:   # and not the float32 product: the rounding happened
    assert np.abs(got - a.astype(np.float64) @ b).max() > 1e-3


def test_bf16_matmul_keeps_nan_and_inf():
  a = np.ones((40, 40), np.float32)
  a[3, 5], a[7, 1] = np.nan, np.inf
  got = np.asarray(kernels.matmul(jnp.asarray(a), jnp.eye(40), bf16=True))
  assert np.isnan(got[3, 5]) and got[7, 1] == np.inf
  assert np.isfinite(np.delete(got, [3, 7], axis=0)).all()


def test_the_kernel_refuses_shapes_that_disagree():
  call = jax.ffi.ffi_call("jaxrec_matmul",
                          jax.ShapeDtypeStruct((3, 3), jnp.float32))
  build.load("matmul")
  with pytest.raises(Exception, match=r"expected \(m, k\) x \(k, n\)"):
    jax.block_until_ready(call(jnp.ones((3, 4)), jnp.ones((5, 3)),
                               transpose_a=False, transpose_b=False,
                               bf16_products=False))


@pytest.mark.parametrize("lhs_shape,rhs_shape,dims", [
    ((3, 5, 4), (4, 6), DENSE),                         # nn.Dense
    ((256, 256), (256, 128), (((1,), (0,)), ((), ()))),  # split, 2-D
    ((3, 5, 2, 3), (2, 3, 4), (((2, 3), (0, 1)), ((), ()))),  # attn out
    ((2, 5, 4), (2, 4, 6), (((2,), (1,)), ((0,), (0,)))),  # batch: lax
])
def test_blas_dot_general_is_dot_general_values_and_gradients(
    lhs_shape, rhs_shape, dims):
  lhs, rhs = _rand(0, lhs_shape), _rand(1, rhs_shape)
  want = lax.dot_general(lhs, rhs, dims)
  got = matmul.blas_dot_general(lhs, rhs, dims)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  cot = _rand(2, want.shape)
  grads = [jax.jit(jax.grad(lambda a, b, f=f: jnp.sum(f(a, b, dims) * cot),
                            argnums=(0, 1)))(lhs, rhs)
           for f in (lax.dot_general, matmul.blas_dot_general)]
  for want_g, got_g in zip(*grads):
    np.testing.assert_allclose(got_g, want_g, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape,use_kernel", [((300, 2, 40), True),
                                               ((3, 2, 40), False)])
def test_blas_bf16_dense_layer_is_the_product_of_rounded_inputs(
    shape, use_kernel, monkeypatch):
  """A 'blas_bf16' Dense layer, y = x w, forward and backward, whether the
  kernel runs it or (below MIN_FLOPS) lax does: every product is of
  bfloat16-rounded factors, in float32: y = r(x) r(w), dx = r(g) r(w)^T,
  dw = r(x)^T r(g), with r rounding to bfloat16."""
  monkeypatch.setattr(blas, "MIN_FLOPS", 1 << 20)
  x, w = _rand(0, shape), _rand(1, (40, 24))
  cot = _rand(2, shape[:2] + (24,))
  f = jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(
      matmul.blas_bf16_dot_general(a, b, DENSE) * cot), argnums=(0, 1)))
  assert _kernel_calls(f, x, w) == (3 if use_kernel else 0)
  y, (dx, dw) = f(x, w)
  x2, g2 = _bf16(x).reshape(-1, 40), _bf16(cot).reshape(-1, 24)
  cot64 = np.asarray(cot, np.float64).reshape(-1, 24)
  np.testing.assert_allclose(y, np.sum((x2 @ _bf16(w)) * cot64), rtol=1e-5)
  assert dx.dtype == dw.dtype == jnp.float32
  np.testing.assert_allclose(dx, (g2 @ _bf16(w).T).reshape(shape),
                             rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(dw, x2.T @ g2, rtol=1e-5, atol=1e-4)


def _kernel_calls(f, *args, target="jaxrec_matmul") -> int:
  return jax.jit(f).lower(*args).as_text().count(target)


def test_a_dense_layer_and_its_gradient_are_three_kernel_calls():
  x, w = _rand(0, (3, 5, 4)), _rand(1, (4, 6))
  f = lambda x, w: jnp.sum(matmul.blas_dot_general(x, w, DENSE))
  assert _kernel_calls(jax.value_and_grad(f, argnums=(0, 1)), x, w) == 3
  # bfloat16 is not the kernel's: lax.dot_general runs it
  xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  assert _kernel_calls(f, xb, wb) == 0
  assert matmul.blas_dot_general(xb, wb, DENSE).dtype == jnp.bfloat16


@pytest.mark.parametrize("cls", [ncf.MLP, ncf.NeuMF])
@pytest.mark.parametrize("kind,target,calls", [
    ("blas", "jaxrec_matmul", 3),           # a kernel call per layer
    ("blas_fused", "jaxrec_tower_fwd", 1)])  # one for the whole tower
def test_ncf_towers_on_blas_are_the_same_model(cls, kind, target, calls):
  xla = cls(n_users=50, n_items=40, factors=8, layers=3)
  mkl = xla.clone(matmul=kind)
  users, items = jnp.arange(64) % 50 + 1, jnp.arange(64) % 40 + 1
  params = xla.init(jax.random.key(0), users, items)
  assert (jax.tree.structure(mkl.init(jax.random.key(0), users, items))
          == jax.tree.structure(params))
  loss = lambda model: jax.jit(jax.value_and_grad(lambda p: jnp.sum(
      jax.nn.log_sigmoid(model.apply(p, users, items)))))(params)
  (lx, gx), (lm, gm) = loss(xla), loss(mkl)
  np.testing.assert_allclose(lm, lx, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-7), gm, gx)
  cands = jnp.arange(1, 41)
  score = lambda model: model.apply(params, users[:5], cands, method="score")
  np.testing.assert_allclose(score(mkl), score(xla), rtol=1e-5, atol=1e-6)
  assert _kernel_calls(lambda p: mkl.apply(p, users, items), params,
                       target=target) == calls


@pytest.mark.parametrize("cls", [ncf.MLP, ncf.NeuMF])
def test_ncf_towers_on_blas_bf16_are_the_rounded_products(cls, monkeypatch):
  """matmul='blas_bf16': the kernel's model is the one lax computes with
  the same bfloat16 products (MIN_FLOPS raised so that none reaches the
  kernel), parameters, logits and gradients float32, and its loss is the
  float32 model's to bfloat16 rounding.  (Its gradients are not compared
  with float32's: at initialisation NeuMF's tower gradients are sums that
  cancel, which bfloat16 factors move far more than their own rounding;
  the training test in test_ncf.py checks that it learns.)"""
  xla = cls(n_users=50, n_items=40, factors=16, layers=3)
  mkl = xla.clone(matmul="blas_bf16")
  users, items = jnp.arange(64) % 50 + 1, jnp.arange(64) % 40 + 1
  params = xla.init(jax.random.key(0), users, items)
  loss = lambda model: jax.jit(jax.value_and_grad(lambda p: jnp.sum(
      jax.nn.log_sigmoid(model.apply(p, users, items)))))(params)
  assert _kernel_calls(lambda p: mkl.apply(p, users, items), params) == 3
  lk, gk = loss(mkl)
  monkeypatch.setattr(blas, "MIN_FLOPS", 1 << 40)
  assert _kernel_calls(lambda p: mkl.apply(p, users, items), params) == 0
  (ll, gl), (lx, _) = loss(mkl), loss(xla)
  np.testing.assert_allclose(lk, ll, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(gk), jax.tree.leaves(gl)):
    assert a.dtype == jnp.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())
  assert lk != lx
  np.testing.assert_allclose(lk, lx, rtol=1e-2)


def test_small_products_stay_on_lax(monkeypatch):
  monkeypatch.setattr(blas, "MIN_FLOPS", 1 << 20)
  f = lambda x, w: matmul.blas_dot_general(x, w, (((1,), (0,)), ((), ())))
  small = (_rand(0, (64, 64)), _rand(1, (64, 64)))        # 0.5 MFLOP
  large = (_rand(0, (128, 64)), _rand(1, (64, 64)))       # 1 MFLOP
  assert _kernel_calls(f, *small) == 0
  assert _kernel_calls(f, *large) == 1
  np.testing.assert_allclose(f(*small), small[0] @ small[1], rtol=1e-5,
                             atol=1e-4)


def test_an_unknown_matmul_is_refused():
  model = ncf.MLP(n_users=5, n_items=4, factors=8, matmul="cublas")
  with pytest.raises(ValueError, match="unknown matmul 'cublas'"):
    model.init(jax.random.key(0), jnp.ones((1,), jnp.int32),
               jnp.ones((1,), jnp.int32))


def test_missing_mkl_names_the_install_and_where_it_looked(monkeypatch,
                                                           tmp_path):
  monkeypatch.setattr(build.sys, "prefix", str(tmp_path))
  monkeypatch.setattr(build.sys, "base_prefix", str(tmp_path))
  monkeypatch.setattr(build.site, "getuserbase", lambda: str(tmp_path))
  monkeypatch.delenv("MKLROOT", raising=False)
  with pytest.raises(RuntimeError, match=r"pip install -e '\.\[mkl\]'.*"
                     + str(tmp_path / "lib")):
    build.mkl_archives()
  assert not blas.available()


def test_flax_dense_accepts_it():
  x = _rand(0, (2, 7, 5))
  plain = nn.Dense(3)
  mkl = nn.Dense(3, dot_general=matmul.dense_dot_general("blas"))
  params = plain.init(jax.random.key(0), x)
  np.testing.assert_allclose(mkl.apply(params, x), plain.apply(params, x),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("launcher_kind", ["pmap", "mesh"])
@pytest.mark.parametrize("kind", ["blas", "blas_fused"])
def test_multi_device_steps_on_blas_are_the_single_device_step(launcher_kind,
                                                               kind):
  """8 devices (tests/conftest.py) train NeuMF with MKL's products (per
  layer, or the fused tower) as one device does: the kernel runs per device
  under pmap, and inside the mesh launcher's jit over a sharded batch."""
  model = ncf.NeuMF(n_users=50, n_items=40, factors=8, matmul=kind)
  rng = np.random.default_rng(0)
  batches = {"user": rng.integers(1, 51, (4, 64)).astype(np.int32),
             "item": rng.integers(1, 41, (4, 64)).astype(np.int32),
             "label": rng.integers(0, 2, (4, 64)).astype(np.float32)}
  params = {}
  for kind in ("single", launcher_kind):
    launcher = parallel.make_launcher(kind, tasks.pointwise_loss, 64)
    state = launcher.put_state(setup.create_state(model, optax.adam(0.01),
                                                  jax.random.key(0)))
    state, _ = launcher.run(state, launcher.put_batches(batches),
                            jax.random.key(1))
    params[kind] = launcher.get_state(state).params
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6),
               params[launcher_kind], params["single"])
