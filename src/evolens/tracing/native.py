"""The vocabulary sweeps as one fused C loop each, built on first use with the machine's C compiler.

The eager sweeps (``sweep.EagerSweep``) spend most of a step on memory passes: ~20 PyTorch operations per
chunk, each reading and writing float64 buffers, around four float64 exp/log per logit that alone cost a
quarter of the lens matmul (``benchmarks/sweep_settings.py``). ``sweep_native.c`` computes the same
float64 sums reading each logit twice, on tiles of all layers of a row that stay in the L2 cache, with
the same exp and log that PyTorch's CPU kernels use for float64 (MKL's vdExp and vdLn, linked from
libtorch_cpu), so its numbers equal the eager path's to float64 rounding (``tests/test_native_sweep.py``).

It is built once per machine, source, PyTorch version and CPU capability (AVX512 or AVX2) into
``$EVOLENS_CACHE`` (default ``~/.cache/evolens``)/native, with ``$CC`` (default ``cc``). Where there is
no compiler, no AVX2, no MKL in PyTorch, or the build fails, ``native_sweeps()`` is None and the engine
runs the eager path (``EVOLENS_NATIVE=0`` asks for that). The vocabulary is split between the
``torch.get_num_threads()`` threads of PyTorch's own OpenMP pool; ctypes releases the GIL during a call.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from evolens.tracing.sweep import ACCUMULATE, ChunkSums

NATIVE_ENV = "EVOLENS_NATIVE"
"""Set to 0 to run the eager sweeps on the CPU even where the native ones build."""
SOURCE = Path(__file__).with_name("sweep_native.c")
FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
"""Compiler flags by ``torch.backends.cpu.get_cpu_capability()``; other capabilities get no native sweep."""
ALIGN = 64
"""Each thread's range of the vocabulary is a multiple of this wide."""

_double_p = ctypes.POINTER(ctypes.c_double)
_float_p = ctypes.POINTER(ctypes.c_float)
_int64 = ctypes.c_int64


def cache_folder() -> Path:
    """Where the library is built: ``$EVOLENS_CACHE/native`` (default ``~/.cache/evolens/native``), or a
    folder of this user in the temporary directory where that cannot be created or written (e.g. a
    read-only home on a cluster node)."""
    folder = Path(os.environ.get("EVOLENS_CACHE") or Path.home() / ".cache" / "evolens") / "native"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"evolens-native-{user}"


def build(capability: str, folder: Path | None = None) -> Path:
    """Compile ``sweep_native.c`` for ``capability`` (a key of ``FLAGS``) unless already built; returns the
    shared library. Raises OSError or CalledProcessError when it cannot."""
    compiler = shutil.which(os.environ.get("CC") or "cc")
    if compiler is None:
        raise OSError("no C compiler (cc) found")
    torch_lib = Path(torch.__file__).parent / "lib"
    flags = ["-O3", "-fopenmp", "-shared", "-fPIC", *FLAGS[capability]]
    key = hashlib.sha256(
        "\n".join([SOURCE.read_text(), torch.__version__, str(torch_lib), compiler, *flags]).encode()
    ).hexdigest()[:16]
    target = (folder or cache_folder()) / f"sweep-{capability.lower()}-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        command = [compiler, *flags, str(SOURCE), "-o", str(built)]
        command += [f"-L{torch_lib}", "-ltorch_cpu", f"-Wl,-rpath,{torch_lib}", "-lm"]
        subprocess.run(command, check=True, capture_output=True, text=True)
        os.replace(built, target)  # atomic: a concurrent build of the same key is harmless
    return target


class NativeSweeps:
    """``sumexp`` and ``sums`` over a whole (G, n, V) logits block; PyTorch's threads split the vocabulary."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self.library = library
        library.evolens_sumexp.argtypes = [_float_p, *[_int64] * 3, ctypes.c_int, _double_p, _double_p]
        library.evolens_sums.argtypes = [
            _float_p, *[_int64] * 3, ctypes.c_int, _double_p, _float_p, ctypes.c_int, ctypes.c_int,
            *[_double_p] * 7,
        ]  # fmt: skip

    def sumexp(self, logits: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """sum_v exp(z_v - shift): logits (G, n, V) fp32 contiguous, shift (G, n, 1) float64 -> (G, n)."""
        rows, layers, vocab = logits.shape
        shift = shift.reshape(rows, layers).to(ACCUMULATE).contiguous()
        parts = _parts(vocab)
        total = torch.zeros(parts, rows, layers, dtype=ACCUMULATE)
        status = self.library.evolens_sumexp(
            _ptr(logits.contiguous(), _float_p), rows, layers, vocab, parts, _ptr(shift), _ptr(total)
        )
        _check(status)
        return total.sum(0)

    def sums(
        self,
        logits: torch.Tensor,
        lse: torch.Tensor,
        token_logit: torch.Tensor,
        full: bool = True,
        paper: bool = False,
    ) -> ChunkSums:
        """``sweep.chunk_sums`` over the whole vocabulary (same arguments; logits (G, n, V) contiguous)."""
        rows, layers, vocab = logits.shape
        lse = lse.reshape(rows, layers).to(ACCUMULATE).contiguous()
        token_logit = token_logit.reshape(rows, layers).float().contiguous()
        parts = _parts(vocab)
        widths = [layers, layers - 1, max(layers - 2, 0), layers, layers - 1, layers - 1, layers]
        out = [torch.zeros(parts, rows, width, dtype=ACCUMULATE) for width in widths]
        status = self.library.evolens_sums(
            _ptr(logits.contiguous(), _float_p), rows, layers, vocab, parts, _ptr(lse),
            _ptr(token_logit, _float_p), int(full), int(paper), *[_ptr(tensor) for tensor in out],
        )  # fmt: skip
        _check(status)
        p_logp, next_slogs, last_slogs, last_cross, next_cross, prev_cross, above = (t.sum(0) for t in out)
        return ChunkSums(
            p_logp=p_logp,
            next_slogs=next_slogs,
            last_slogs=last_slogs if full else None,
            last_cross=last_cross if full else None,
            next_cross=next_cross if paper else None,
            prev_cross=prev_cross if paper else None,
            above=above if full else None,
        )


def _parts(vocab: int) -> int:
    """How many vocabulary ranges (one per thread): PyTorch's threads, at least 64 entries each."""
    return max(1, min(torch.get_num_threads(), vocab // ALIGN))


def _check(status: int) -> None:
    if status != 0:
        raise MemoryError("the native metric sweep could not allocate its tile buffers")


def _ptr(tensor: torch.Tensor, kind: Any = _double_p) -> Any:
    """A ctypes pointer of ``kind`` to the tensor's data (which must outlive the call)."""
    return ctypes.cast(tensor.data_ptr(), kind)


def cpu_capability() -> str:
    """PyTorch's CPU capability, "AVX512" for every AVX-512 variant (e.g. "AVX2", "DEFAULT")."""
    capability = torch.backends.cpu.get_cpu_capability()
    return "AVX512" if capability.startswith("AVX512") else capability


@functools.cache
def native_sweeps() -> NativeSweeps | None:
    """The native sweeps of this machine, built on first use; None where unavailable (see the module doc)."""
    capability = cpu_capability()
    if os.environ.get(NATIVE_ENV, "").strip() == "0" or capability not in FLAGS:
        return None
    try:
        return NativeSweeps(ctypes.CDLL(str(build(capability))))
    except (OSError, subprocess.CalledProcessError) as exc:
        if isinstance(exc, subprocess.CalledProcessError):
            detail = " ".join(exc.stderr.strip().splitlines()[-1:])
        else:
            detail = str(exc)
        warnings.warn(f"native metric sweeps unavailable ({detail}); running them eagerly", stacklevel=2)
        return None
