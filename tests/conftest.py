"""Test setup: 8 forced CPU devices and strict rank promotion.

XLA reads XLA_FLAGS when JAX's backend starts, so they are set here, before
any test runs a computation.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
