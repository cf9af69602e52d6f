"""The C sweep kernel evolens used before the numba one, kept here only so that benchmarks can measure it
in the same run as today's backends (``trace_overhead.py --methods ours-legacy-c``,
``sweep_settings.py``). evolens itself never builds or loads it.

``legacy_sweep_native.c`` calls MKL's vector exp/log (vmdExp, vmdLn) and MKL_Set_Num_Threads_Local, which
the PyTorch CPU wheel happens to export (not a PyTorch API), and runs in PyTorch's OpenMP pool. It is
built with ``cc`` into a fresh private temporary folder each time (nothing shared or cached), and is
None where it does not build.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from evolens.tracing.sweep import ACCUMULATE, ChunkSums, block_maxima

SOURCE = Path(__file__).with_name("legacy_sweep_native.c")
FLAGS = {"AVX512": ["-mavx512f", "-mavx512dq", "-mfma"], "AVX2": ["-mavx2", "-mfma"]}
_double_p = ctypes.POINTER(ctypes.c_double)
_float_p = ctypes.POINTER(ctypes.c_float)
_int64 = ctypes.c_int64


def build(folder: Path) -> Path | None:
    """Compile the kernel into ``folder`` for this CPU; None without a compiler or AVX2."""
    capability = torch.backends.cpu.get_cpu_capability()
    capability = "AVX512" if capability.startswith("AVX512") else capability
    compiler = shutil.which("cc")
    if compiler is None or capability not in FLAGS:
        return None
    torch_lib = Path(torch.__file__).parent / "lib"
    target = folder / "legacy_sweeps.so"
    command = [compiler, "-O3", "-fopenmp", "-shared", "-fPIC", *FLAGS[capability], str(SOURCE)]
    command += ["-o", str(target), f"-L{torch_lib}", "-ltorch_cpu", f"-Wl,-rpath,{torch_lib}", "-lm"]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return target


class LegacyCSweeps:
    """``evolens.tracing.sweep.SweepBackend`` with the old C kernel (one vocabulary range per thread)."""

    name = "legacy-c"
    reserved_bytes = 0
    scratch_bytes = 0

    def __init__(self, library: ctypes.CDLL) -> None:
        self.library = library
        library.evolens_sumexp.argtypes = [_float_p, *[_int64] * 3, ctypes.c_int, _double_p, _double_p]
        library.evolens_sums.argtypes = [
            _float_p, *[_int64] * 3, ctypes.c_int, _double_p, _float_p, ctypes.c_int, ctypes.c_int,
            *[_double_p] * 7,
        ]  # fmt: skip

    def release(self) -> None:
        pass

    def normalizers(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        block_max = block_maxima(logits)
        shift = block_max.amax(-1, keepdim=True).to(ACCUMULATE)
        rows, layers, vocab = logits.shape
        flat_shift = shift.reshape(rows, layers).contiguous()
        parts = _parts(vocab)
        total = torch.zeros(parts, rows, layers, dtype=ACCUMULATE)
        self.library.evolens_sumexp(
            _ptr(logits, _float_p), rows, layers, vocab, parts, _ptr(flat_shift), _ptr(total)
        )
        return block_max, shift + torch.log(total.sum(0)).unsqueeze(-1)

    def sums(
        self, logits: torch.Tensor, lse: torch.Tensor, token_logit: torch.Tensor, full: bool, paper: bool
    ) -> ChunkSums:
        rows, layers, vocab = logits.shape
        lse = lse.reshape(rows, layers).to(ACCUMULATE).contiguous()
        token_logit = token_logit.reshape(rows, layers).float().contiguous()
        parts = _parts(vocab)
        widths = [layers, layers - 1, max(layers - 2, 0), layers, layers - 1, layers - 1, layers]
        out = [torch.zeros(parts, rows, width, dtype=ACCUMULATE) for width in widths]
        self.library.evolens_sums(
            _ptr(logits, _float_p), rows, layers, vocab, parts, _ptr(lse), _ptr(token_logit, _float_p),
            int(full), int(paper), *[_ptr(tensor) for tensor in out],
        )  # fmt: skip
        p_logp, next_slogs, last_slogs, last_cross, next_cross, prev_cross, above = (t.sum(0) for t in out)
        return ChunkSums(
            p_logp, next_slogs, last_slogs if full else None, last_cross if full else None,
            next_cross if paper else None, prev_cross if paper else None, above if full else None,
        )  # fmt: skip


def _parts(vocab: int) -> int:
    return max(1, min(torch.get_num_threads(), vocab // 64))


def _ptr(tensor: torch.Tensor, kind: Any = _double_p) -> Any:
    assert tensor.is_contiguous()
    return ctypes.cast(tensor.data_ptr(), kind)


def legacy_c_sweeps() -> LegacyCSweeps | None:
    """The old kernel, freshly built in a private temporary folder; None where it does not build."""
    library = build(Path(tempfile.mkdtemp(prefix="evolens-legacy-")))
    return None if library is None else LegacyCSweeps(ctypes.CDLL(str(library)))
