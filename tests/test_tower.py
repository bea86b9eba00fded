"""The fused tower kernel (jaxrec.kernels.tower) is the ReLU tower lax
computes, forward and backward, on one core and split over the cores.  (The
NCF models on `matmul='blas_fused'`, one device and eight, are checked with
the per-layer kernel's in tests/test_blas.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.kernels import blas, build, tower
from jaxrec.models import layers

pytestmark = pytest.mark.skipif(
    not blas.available(), reason="MKL not installed (pip install -e '.[mkl]')")


@pytest.fixture(autouse=True)
def kernel_for_every_size(monkeypatch):
  """Small towers keep these tests fast: let them reach the kernel too
  (test_small_towers_stay_on_lax checks the size rule itself)."""
  monkeypatch.setattr(tower, "MIN_FLOPS", 0)


def _rand(key, shape, scale=1.0):
  return scale * jax.random.normal(jax.random.key(key), shape)


def _tower_args(rows, widths, blocks=None, seed=0):
  """xs, blocks of x (rows, widths[0]) of the given widths (default: one
  block), kernels and biases for the layers after it.  Biases are drawn
  around zero so that some units are dead (ReLU's mask matters) and some
  live."""
  blocks = blocks or (widths[0],)
  assert sum(blocks) == widths[0]
  xs = tuple(_rand(seed + 20 + i, (rows, w)) for i, w in enumerate(blocks))
  kernels = tuple(_rand(seed + 1 + i, (a, b), a ** -0.5)
                  for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])))
  biases = tuple(_rand(seed + 10 + i, (b,), 0.3)
                 for i, b in enumerate(widths[1:]))
  return xs, kernels, biases


def _calls(f, *args) -> tuple[int, int]:
  text = jax.jit(f).lower(*args).as_text()
  return text.count("jaxrec_tower_fwd"), text.count("jaxrec_tower_bwd")


@pytest.mark.parametrize("rows,widths,blocks", [
    (37, (5, 7, 3), None),               # one core (below the split size)
    (301, (200, 150, 100, 50), None),    # split over the cores, odd rows
    (301, (200, 150, 100, 50), (120, 80)),   # x as two blocks (NCF's)
    (40, (9, 6, 4), (2, 3, 4)),          # three blocks
    (64, (16, 8), None),                 # one layer
    (0, (6, 4, 2), (4, 2)),              # no rows
])
def test_the_kernel_is_the_lax_tower_values_and_gradients(rows, widths,
                                                           blocks):
  xs, kernels, biases = _tower_args(rows, widths, blocks)
  cot = _rand(99, (rows, widths[-1]))
  runs = {}
  for name, f in (("kernel", tower.tower), ("lax", tower.lax_tower)):
    loss = lambda x, k, b, f=f: jnp.sum(f(x, k, b) * cot)
    runs[name] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(
        xs, kernels, biases)
  assert _calls(lambda x: tower.tower(x, kernels, biases), xs) == (1, 0)
  got, want = runs["kernel"], runs["lax"]
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-4)
  assert len(got[1][0]) == len(xs)            # a gradient per block
  for g, w in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1])):
    # sums of up to 301 terms, in another order: float32 rounding relative
    # to the array's scale
    np.testing.assert_allclose(g, w, rtol=1e-5,
                               atol=1e-5 * float(np.abs(w).max(initial=1)))
  if rows:     # the mask mattered: some units were dead, some alive
    out = tower.tower(xs, kernels, biases)
    assert 0 < float(jnp.mean(out > 0)) < 1


def test_forward_and_backward_are_one_kernel_call_each():
  xs, kernels, biases = _tower_args(32, (12, 8, 4, 2), (5, 7))
  f = jax.value_and_grad(lambda x, k, b: jnp.sum(tower.tower(x, k, b)),
                         argnums=(0, 1, 2))
  assert _calls(f, xs, kernels, biases) == (1, 1)
  text = jax.jit(f).lower(xs, kernels, biases).as_text()
  assert "concatenate" not in text


def test_small_towers_stay_on_lax(monkeypatch):
  monkeypatch.setattr(tower, "MIN_FLOPS", 1 << 23)
  small = _tower_args(256, (32, 32, 16, 8))        # an 8-factor NCF tower
  large = _tower_args(256, (128, 128, 64, 32))     # a 32-factor one
  assert _calls(lambda x: tower.tower(x, *small[1:]), small[0]) == (0, 0)
  assert _calls(lambda x: tower.tower(x, *large[1:]), large[0]) == (1, 0)
  np.testing.assert_allclose(tower.tower(*small), tower.lax_tower(*small),
                             rtol=1e-6)


def test_the_kernel_refuses_inputs_that_do_not_chain():
  build.load("tower")
  out = [jax.ShapeDtypeStruct((4, 3), jnp.float32)] * 2
  call = jax.ffi.ffi_call("jaxrec_tower_fwd", out)
  with pytest.raises(Exception, match=r"layer 1: expected a float32 kernel "
                     r"\(3, out\)"):
    jax.block_until_ready(call(jnp.ones((4, 2)), jnp.ones((4, 3)),
                               jnp.ones((5, 3)), jnp.ones((3,)),
                               jnp.ones((4, 3)), jnp.ones((3,)),
                               num_blocks=2))
  with pytest.raises(Exception, match=r"input block 1: expected float32 "
                     r"\(4, width\)"):
    jax.block_until_ready(call(jnp.ones((4, 2)), jnp.ones((3, 3)),
                               jnp.ones((5, 3)), jnp.ones((3,)),
                               jnp.ones((3, 3)), jnp.ones((3,)),
                               num_blocks=2))


def test_a_tower_flattens_leading_axes_and_keeps_dropout_layers():
  """Tower(matmul='blas_fused') on (B, N, D) inputs is the 'xla' tower;
  with dropout in training it runs the per-layer path (the kernel has no
  dropout), and evaluation runs the kernel."""
  x = _rand(0, (3, 5, 12))
  plain = layers.Tower((8, 6, 4), dropout=0.5)
  fused = plain.clone(matmul="blas_fused")
  params = plain.init(jax.random.key(0), x)
  np.testing.assert_allclose(fused.apply(params, x), plain.apply(params, x),
                             rtol=1e-5, atol=1e-6)
  assert _calls(lambda p: fused.apply(p, x), params) == (1, 0)
  train = lambda model: lambda p: model.apply(
      p, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert _calls(train(fused), params) == (0, 0)
  np.testing.assert_allclose(train(fused)(params), train(plain)(params),
                             rtol=1e-5, atol=1e-6)
