"""jaxrec: deep recommender systems in JAX/Flax.

Conventions used throughout (see each module's shape legend):
  * user and item id 0 is padding; real ids are 1..n_users and 1..n_items.
  * shapes are written in docstrings, e.g. ``(batch, n_candidates)``.
"""

__version__ = "0.1.0"
