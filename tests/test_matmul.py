"""models/matmul.flat_dot_general equals lax.dot_general, values and
gradients, for the Dense forms it flattens and the forms it passes on."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxrec.models import matmul

DENSE = (((2,), (0,)), ((), ()))


def _rand(key, shape):
  return jax.random.normal(jax.random.key(key), shape)


@pytest.mark.parametrize("lhs_shape,rhs_shape,dims", [
    ((3, 5, 4), (4, 6), DENSE),                         # nn.Dense
    ((3, 5, 4), (4, 2, 3), DENSE),                      # attention q/k/v
    ((3, 5, 2, 3), (2, 3, 4), (((2, 3), (0, 1)), ((), ()))),  # attn out
    ((4,), (4, 6), (((0,), (0,)), ((), ()))),           # no leading axes
    ((2, 5, 4), (2, 4, 6), (((2,), (1,)), ((0,), (0,)))),  # batch: passed on
    ((5, 4, 3), (5, 6), (((0,), (0,)), ((), ()))),      # leading contract
])
def test_equals_dot_general_values_and_gradients(lhs_shape, rhs_shape, dims):
  lhs, rhs = _rand(0, lhs_shape), _rand(1, rhs_shape)
  want = lax.dot_general(lhs, rhs, dims)
  got = matmul.flat_dot_general(lhs, rhs, dims)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  cot = _rand(2, want.shape)
  grads = [jax.grad(lambda a, b, f=f: jnp.sum(f(a, b, dims) * cot),
                    argnums=(0, 1))(lhs, rhs)
           for f in (lax.dot_general, matmul.flat_dot_general)]
  for want_g, got_g in zip(*grads):
    np.testing.assert_allclose(got_g, want_g, rtol=1e-5, atol=1e-5)


def test_dense_form_is_one_2d_product():
  """A (B, L, D) Dense becomes a single rank-2 dot_general, forward and
  in its gradient (the form whose kernel gradient XLA's CPU runs fast)."""
  x, w = _rand(0, (3, 5, 4)), _rand(1, (4, 6))
  f = lambda x, w: jnp.sum(matmul.flat_dot_general(x, w, DENSE))
  jaxpr = jax.make_jaxpr(jax.grad(f, argnums=(0, 1)))(x, w)
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  assert len(dots) == 3  # forward, input gradient, kernel gradient
  assert all(v.aval.ndim == 2 for e in dots for v in e.invars)


def test_flax_dense_accepts_it():
  x = _rand(0, (2, 7, 5))
  plain, flat = nn.Dense(3), nn.Dense(3, dot_general=matmul.flat_dot_general)
  params = plain.init(jax.random.key(0), x)
  np.testing.assert_allclose(flat.apply(params, x), plain.apply(params, x),
                             rtol=1e-5, atol=1e-6)
