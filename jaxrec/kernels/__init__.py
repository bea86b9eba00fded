"""Row-sparse exact Adam for embedding tables: a hand-written CPU kernel.

Dense Adam (PyTorch's `torch.optim.Adam`, optax's `adam`) moves every row
of an embedding table every step: rows the batch missed have a zero
gradient, but their moments still decay and their parameters still move.
`row_adam` makes that whole step in one pass over each table's parameter
and both moments, reading the gradient only where a batch touched a row,
so no table-sized gradient is ever built.  On the CPU it runs row_adam.cc,
an XLA FFI handler compiled with the machine's C++ compiler on first use
(cached under $JAXREC_KERNEL_CACHE, default ~/.cache/jaxrec/kernels; $CXX
picks the compiler); elsewhere it runs the same formula in jax.numpy.

Per element, with g = 0 on untouched rows and t the step number (1, 2, ...):
  m <- (1 - b1) g + b1 m
  v <- (1 - b2) g^2 + b2 v
  p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
which is Adam with bias correction, written as PyTorch writes it; optax's
adam computes the same quantity in another order, so the two agree to
float32 rounding (tests/test_row_sparse.py).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

SOURCE = Path(__file__).with_name("row_adam.cc")
TARGET = "jaxrec_row_adam"
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno",
         "-std=c++17", "-shared", "-fPIC")


def _cpu_signature() -> str:
  """The CPU's model and feature flags (the build uses -march=native)."""
  try:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    return os.uname().machine
  keep = [l for l in lines if l.startswith(("model name", "flags"))][:2]
  return "\n".join(keep)


def library_path() -> Path:
  """The compiled kernel for this source, compiler flags, JAX and CPU;
  built (atomically, so concurrent processes are safe) when missing.

  Raises RuntimeError with the compiler's command and output on failure.
  """
  cxx = os.environ.get("CXX", "g++")
  include = jax.ffi.include_dir()
  key = hashlib.sha256("\0".join(
      [SOURCE.read_text(), cxx, *FLAGS, jax.__version__, include,
       _cpu_signature()]).encode()).hexdigest()[:16]
  cache = Path(os.environ.get("JAXREC_KERNEL_CACHE",
                              Path.home() / ".cache" / "jaxrec" / "kernels"))
  out = cache / f"row_adam-{key}.so"
  if out.exists():
    return out
  cache.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
  os.close(fd)
  cmd = [cxx, *FLAGS, f"-I{include}", str(SOURCE), "-o", tmp]
  try:
    done = subprocess.run(cmd, capture_output=True, text=True)
  except FileNotFoundError:
    os.unlink(tmp)
    raise RuntimeError(f"no C++ compiler {cxx!r} to build {SOURCE} (set "
                       "$CXX, or use optim.tables='dense')") from None
  if done.returncode:
    os.unlink(tmp)
    raise RuntimeError(f"building {SOURCE} failed: {' '.join(cmd)}\n"
                       f"{done.stderr[-4000:]}")
  os.replace(tmp, out)
  return out


@functools.cache
def load() -> None:
  """Builds (if needed) and registers the CPU kernel with XLA, once."""
  lib = ctypes.cdll.LoadLibrary(str(library_path()))
  jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.JaxrecRowAdam),
                              platform="cpu")


def coefficients(count, lr, b1: float, b2: float):
  """(step, inv_sqrt_bc2) float32 for the step after `count` steps:
  -lr / (1 - b1^t) and 1 / sqrt(1 - b2^t), t = count + 1."""
  t = (count + 1).astype(jnp.float32)
  step = -jnp.asarray(lr, jnp.float32) / (1 - jnp.float32(b1) ** t)
  return step, jax.lax.rsqrt(1 - jnp.float32(b2) ** t)


def row_adam_jnp(p, m, v, slot, g, step, inv_sqrt_bc2, b1, b2, eps):
  """The kernel's formula for one table in jax.numpy (other backends, and
  the tests' reference).  p, m, v: (rows, dim); slot: (rows,) index into
  g (n, dim) or -1.  Returns (p, m, v)."""
  touched = (slot >= 0)[:, None]
  gr = jnp.where(touched, g[jnp.clip(slot, 0)], 0.0)
  m = (1 - b1) * gr + b1 * m
  v = (1 - b2) * gr * gr + b2 * v
  return p + step * m / (jnp.sqrt(v) * inv_sqrt_bc2 + eps), m, v


def row_adam(params, mus, nus, slots, grads, count, lr, *, b1=0.9,
             b2=0.999, eps=1e-8):
  """One exact dense Adam step on K embedding tables with row-sparse
  gradients.

  Args:
    params, mus, nus: K-lists of (rows_k, dim_k) float32: the tables and
      their first and second moments.  On the CPU they are updated in
      place: donate them (a jitted train step with its state donated does).
    slots: K-lists of (rows_k,) int32: row r's gradient is grads[k][slot],
      or zero where slot is -1.
    grads: K-lists of (n_k, dim_k) float32, the touched rows' summed
      gradients.
    count: int32 scalar, the steps taken before this one.
    lr: the learning rate (a float or a scalar array).

  Returns:
    (params, mus, nus) after the step, as K-lists.
  """
  if not params:
    return [], [], []
  step, inv = coefficients(count, lr, b1, b2)
  # The platform the step is traced for: jaxrec's launchers place the
  # state on jax's default backend.
  if jax.default_backend() != "cpu":
    out = [row_adam_jnp(*t, step, inv, b1, b2, eps)
           for t in zip(params, mus, nus, slots, grads)]
    return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]
  load()
  args, shapes = [], []
  for p, m, v, s, g in zip(params, mus, nus, slots, grads):
    args += [p, m, v, s.astype(jnp.int32), g.astype(jnp.float32)]
    shapes += [jax.ShapeDtypeStruct(p.shape, jnp.float32)] * 3
  aliases = {1 + 5 * k + i: 3 * k + i for k in range(len(params))
             for i in range(3)}
  call = jax.ffi.ffi_call(TARGET, shapes, input_output_aliases=aliases)
  out = call(jnp.stack([step, inv]), *args, b1=float(b1), b2=float(b2),
             eps=float(eps))
  return list(out[0::3]), list(out[1::3]), list(out[2::3])
