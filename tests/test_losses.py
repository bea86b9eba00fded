"""losses.full_softmax: the chunked softmax cross-entropy against the
materialised logit matrix, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec import losses


def _inputs(m=7, v=23, d=5):
  keys = jax.random.split(jax.random.key(0), 4)
  hidden = jax.random.normal(keys[0], (m, d))
  table = jax.random.normal(keys[1], (v, d))
  bias = jax.random.normal(keys[2], (v,)).at[0].set(-jnp.inf)
  labels = jax.random.randint(keys[3], (m,), 1, v)
  return hidden, table, bias, labels


def _dense(hidden, table, bias, labels, weight):
  ce = optax.softmax_cross_entropy_with_integer_labels(
      hidden @ table.T + bias[None, :], labels)
  return jnp.sum(ce * weight)


def _chunked(chunk):
  def loss(hidden, table, bias, labels, weight):
    return jnp.sum(losses.full_softmax(hidden, table, bias, labels, chunk)
                   * weight)
  return loss


@pytest.mark.parametrize("chunk", [4, 23, 64])   # ragged, exact, one chunk
def test_full_softmax_equals_the_dense_softmax_and_its_gradients(chunk):
  hidden, table, bias, labels = _inputs()
  weight = jnp.linspace(0.5, 2.0, hidden.shape[0])
  grad = jax.value_and_grad(_dense, argnums=(0, 1, 2))
  want_value, want_grads = grad(hidden, table, bias, labels, weight)
  value, grads = jax.value_and_grad(_chunked(chunk), argnums=(0, 1, 2))(
      hidden, table, bias, labels, weight)
  np.testing.assert_allclose(value, want_value, rtol=1e-5)
  for got, want in zip(grads, want_grads):
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert grads[2][0] == 0.0          # an id with bias -inf gets no mass


def test_full_softmax_repeated_labels_add_their_gradients():
  hidden, table, bias, _ = _inputs(m=4)
  labels = jnp.array([3, 3, 3, 9])
  weight = jnp.ones(4)
  want = jax.grad(_dense, argnums=1)(hidden, table, bias, labels, weight)
  got = jax.grad(_chunked(8), argnums=1)(hidden, table, bias, labels, weight)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("v, chunk, want", [
    (3417, 2048, (2, 1712)),      # BERT4Rec at ML-1M's items: not 2 x 2048
    (54543, 2048, (27, 2032)),    # Beauty
    (23, 64, (1, 32)),            # one chunk, aligned
    (4096, 2048, (2, 2048)),      # exact
    (23, 4, (6, 4))])             # never wider than the chunk
def test_chunks_cover_the_ids_with_little_padding(v, chunk, want):
  n, width = losses.chunk_width(v, chunk)
  assert (n, width) == want
  assert n * width >= v and n * width - v < n * 16
