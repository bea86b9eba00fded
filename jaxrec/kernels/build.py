"""Builds and registers jaxrec's CPU kernels.

Two libraries, each compiled with the machine's C++ compiler ($CXX,
default g++) on first use and cached under $JAXREC_KERNEL_CACHE (default
~/.cache/jaxrec/kernels), keyed by its sources, what it links, the
compiler and flags, JAX's version and the CPU (-march=native):
  row_adam: row_adam.cc, no dependency.
  matmul: matmul.cc linked with Intel MKL's static archives (the
    `mkl-static` wheel: pip install -e '.[mkl]', x86-64 only).  Linked
    statically with its symbols hidden, this copy of MKL cannot bind to
    another library's in the same process, or they to it: PyTorch ships
    its own MKL, and a second, dynamically loaded one took over PyTorch's
    products, single-threaded.
  tower: tower.cc, a whole ReLU tower's forward and backward, linked with
    MKL as matmul is.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import os
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import jax

HERE = Path(__file__).parent
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno",
         "-std=c++17", "-shared", "-fPIC")
MKL_ARCHIVES = ("libmkl_intel_lp64.a", "libmkl_sequential.a",
                "libmkl_core.a")


@dataclasses.dataclass(frozen=True)
class Library:
  sources: tuple[str, ...]
  targets: dict            # XLA FFI target name -> exported symbol
  needs_mkl: bool = False


LIBRARIES = {
    "row_adam": Library(("row_adam.cc",),
                        {"jaxrec_row_adam": "JaxrecRowAdam"}),
    "matmul": Library(("matmul.cc",), {"jaxrec_matmul": "JaxrecMatmul"},
                      needs_mkl=True),
    "tower": Library(("tower.cc",), {"jaxrec_tower_fwd": "JaxrecTowerFwd",
                                     "jaxrec_tower_bwd": "JaxrecTowerBwd"},
                     needs_mkl=True),
}
HEADERS = ("cblas.h", "parallel_for.h")


def _cpu_signature() -> str:
  """The CPU's model and feature flags (the build uses -march=native)."""
  try:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    return os.uname().machine
  keep = [l for l in lines if l.startswith(("model name", "flags"))][:2]
  return "\n".join(keep)


def mkl_archives() -> list[Path]:
  """MKL's static archives for a sequential LP64 sgemm, from the Python
  environment's lib/ (where the mkl-static wheel puts them) or $MKLROOT/lib.

  Raises RuntimeError naming where it looked when they are missing.
  """
  roots = [Path(r, "lib") for r in dict.fromkeys(
      [sys.prefix, sys.base_prefix, site.getuserbase()])]
  if os.environ.get("MKLROOT"):
    roots.insert(0, Path(os.environ["MKLROOT"], "lib"))
  for root in roots:
    found = [root / name for name in MKL_ARCHIVES]
    if all(p.exists() for p in found):
      return found
  raise RuntimeError(
      f"model.matmul='blas' needs Intel MKL's static archives "
      f"{', '.join(MKL_ARCHIVES)} (pip install -e '.[mkl]', x86-64 only); "
      f"looked in {', '.join(map(str, roots))}")


def _link_args(archives: list[Path]) -> list[str]:
  """The linker arguments for these static archives (none: none)."""
  if not archives:
    return []
  return ["-Wl,--start-group", *map(str, archives), "-Wl,--end-group",
          "-Wl,--exclude-libs,ALL", "-Wl,-Bsymbolic", "-lpthread", "-lm",
          "-ldl"]


def library_path(name: str = "row_adam") -> Path:
  """The compiled library `name` (a key of LIBRARIES) for this machine;
  built (atomically, so concurrent processes are safe) when missing.

  Raises RuntimeError with the compiler's command and output on failure.
  """
  lib = LIBRARIES[name]
  cxx = os.environ.get("CXX", "g++")
  include = jax.ffi.include_dir()
  sources = [HERE / s for s in lib.sources]
  archives = mkl_archives() if lib.needs_mkl else []
  link = _link_args(archives)
  linked = [f"{p}:{p.stat().st_size}" for p in archives]
  key = hashlib.sha256("\0".join(
      [*(p.read_text() for p in sources + [HERE / h for h in HEADERS]),
       cxx, *FLAGS, *link, *linked, jax.__version__, include,
       _cpu_signature()]).encode()).hexdigest()[:16]
  cache = Path(os.environ.get("JAXREC_KERNEL_CACHE",
                              Path.home() / ".cache" / "jaxrec" / "kernels"))
  out = cache / f"{name}-{key}.so"
  if out.exists():
    return out
  cache.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
  os.close(fd)
  cmd = [cxx, *FLAGS, f"-I{include}", *map(str, sources), "-o", tmp, *link]
  try:
    done = subprocess.run(cmd, capture_output=True, text=True)
  except FileNotFoundError:
    os.unlink(tmp)
    raise RuntimeError(f"no C++ compiler {cxx!r} to build {name} (set $CXX, "
                       "or use optim.tables='dense' and model.matmul='xla')"
                       ) from None
  if done.returncode:
    os.unlink(tmp)
    raise RuntimeError(f"building {', '.join(lib.sources)} failed: "
                       f"{' '.join(cmd)}\n{done.stderr[-4000:]}")
  os.replace(tmp, out)
  return out


@functools.cache
def load(name: str = "row_adam") -> ctypes.CDLL:
  """Builds (if needed) and registers library `name`'s kernels, once."""
  lib = ctypes.cdll.LoadLibrary(str(library_path(name)))
  for target, symbol in LIBRARIES[name].targets.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                platform="cpu")
  return lib
