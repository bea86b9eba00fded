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
from jaxrec.kernels import blas, build
from jaxrec.models import matmul, ncf
from jaxrec.train import setup, tasks

pytestmark = pytest.mark.skipif(
    not blas.available(), reason="MKL not installed (pip install -e '.[mkl]')")

DENSE = (((2,), (0,)), ((), ()))


@pytest.fixture(autouse=True)
def kernel_for_every_size(monkeypatch):
  """Small shapes keep these tests fast: let them reach the kernel too
  (test_small_products_stay_on_lax checks the size rule itself)."""
  monkeypatch.setattr(blas, "MIN_FLOPS", 0)


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


def test_the_kernel_refuses_shapes_that_disagree():
  call = jax.ffi.ffi_call("jaxrec_matmul",
                          jax.ShapeDtypeStruct((3, 3), jnp.float32))
  build.load("matmul")
  with pytest.raises(Exception, match=r"expected \(m, k\) x \(k, n\)"):
    jax.block_until_ready(call(jnp.ones((3, 4)), jnp.ones((5, 3)),
                               transpose_a=False, transpose_b=False))


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


def _kernel_calls(f, *args) -> int:
  return jax.jit(f).lower(*args).as_text().count("jaxrec_matmul")


def test_a_dense_layer_and_its_gradient_are_three_kernel_calls():
  x, w = _rand(0, (3, 5, 4)), _rand(1, (4, 6))
  f = lambda x, w: jnp.sum(matmul.blas_dot_general(x, w, DENSE))
  assert _kernel_calls(jax.value_and_grad(f, argnums=(0, 1)), x, w) == 3
  # bfloat16 is not the kernel's: lax.dot_general runs it
  xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  assert _kernel_calls(f, xb, wb) == 0
  assert matmul.blas_dot_general(xb, wb, DENSE).dtype == jnp.bfloat16


@pytest.mark.parametrize("cls", [ncf.MLP, ncf.NeuMF])
def test_ncf_towers_on_blas_are_the_same_model(cls):
  xla = cls(n_users=50, n_items=40, factors=8, layers=3)
  mkl = xla.clone(matmul="blas")
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
  assert _kernel_calls(lambda p: mkl.apply(p, users, items), params) == 3


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
def test_multi_device_steps_on_blas_are_the_single_device_step(launcher_kind):
  """8 devices (tests/conftest.py) train NeuMF with MKL's products as one
  device does: the kernel runs per device under pmap, and inside the mesh
  launcher's jit over a sharded batch."""
  model = ncf.NeuMF(n_users=50, n_items=40, factors=8, matmul="blas")
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
