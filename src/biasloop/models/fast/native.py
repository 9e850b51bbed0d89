"""Native C kernels of the compact decoder, compiled on first use.

PyTorch eager runs the non-matmul work of a CPU decode step as 30-40 small ops per
layer, each a separate pass over memory; at the loop's batch sizes they took more
time than the matmuls. ``native_kernels.c`` does that work in a few passes:

* **single-query attention** over the bf16 KV cache, one pass per (row, KV head)
  over the filled cache columns, accumulating in float32;
* **the fused decode step**: RMSNorm (+ int8 quantisation) before q/k/v, RoPE and
  the cache write after it, residual add + RMSNorm (+ quantisation) after the
  output and down projections, SiLU(gate) * up (+ quantisation) after gate/up, for
  bf16 and int8 layers;
* **int8 activation quantisation** around ``torch._int_mm`` elsewhere, with the
  float operations of the PyTorch code in the same order, so the bytes are identical;
* **top-p candidates**: each row's 256 largest logits and softmax normaliser in one
  pass, and the float32 top logits without a gathered copy of the head.

The source is compiled with the machine's C compiler (``$CC``, else ``cc``, ``gcc``
or ``clang``) as ``-O3 -march=native -fopenmp`` into a per-user cache
(``$BIASLOOP_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/biasloop/kernels`` or
``~/.cache/biasloop/kernels``), keyed by the source, compiler, flags and CPU, and
written atomically; later processes load it in milliseconds. Without a compiler
the decoder uses PyTorch ops and logs so (``generation.kernels``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from biasloop.models.precision import cpu_flags

logger = logging.getLogger("biasloop.models")

SOURCE = Path(__file__).with_name("native_kernels.c")
#: ``bl_abi_version()`` of the source this module's signatures describe.
ABI_VERSION = 5
COMPILE_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared")
COMPILE_TIMEOUT_SECONDS = 300

_long, _ptr, _int, _float = ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_float
_SIGNATURES = {
    "bl_abi_version": ([], _int),
    "bl_attention_supported": ([_long, _long, _long], _int),
    "bl_decode_attention": (
        [_ptr, _long, _ptr, _ptr, _long, _ptr, _long, _long, _ptr, _long, _long, _long, _long,
         _float, _int],
        _int,
    ),
    "bl_quantize_rows": ([_ptr, _long, _long, _long, _ptr, _ptr, _int], None),
    "bl_dequantize": ([_ptr, _long, _long, _ptr, _ptr, _int], None),
    "bl_norm_quantize": ([_ptr, _long, _long, _ptr, _float, _ptr, _ptr, _int], _int),
    "bl_residual_norm_quantize": (
        [_ptr, _ptr, _ptr, _ptr, _long, _long, _ptr, _float, _ptr, _ptr, _int], _int
    ),
    "bl_silu_quantize": ([_ptr, _ptr, _ptr, _long, _long, _ptr, _ptr, _int], _int),
    "bl_top_candidates": (
        [_ptr, _long, _long, _long, _long, _float, _ptr, _ptr, _ptr, _ptr, _int], _int
    ),
    "bl_gathered_dot": ([_ptr, _ptr, _ptr, _long, _long, _long, _ptr, _int], None),
    "bl_rope_store": (
        [_ptr, _ptr, _ptr, _ptr, _long, _long, _long, _long, _ptr, _ptr, _ptr, _ptr, _ptr,
         _long, _long, _int],
        None,
    ),
    "bl_norm_bf16": ([_ptr, _long, _long, _ptr, _float, _ptr, _int], _int),
    "bl_residual_norm_bf16": ([_ptr, _ptr, _long, _long, _ptr, _float, _ptr, _int], _int),
    "bl_silu_bf16": ([_ptr, _long, _long, _ptr, _int], None),
}


class NativeKernelsUnavailable(Exception):
    """The kernels could not be compiled or loaded here; the message says why, on one line."""


@dataclass(frozen=True)
class NativeKernels:
    """The loaded kernel library, with tensor-level wrappers that check their inputs."""

    library: ctypes.CDLL
    path: Path

    @staticmethod
    def _threads() -> int:
        return max(1, torch.get_num_threads())

    def attention_supported(self, *, n_heads: int, n_kv_heads: int, head_dim: int) -> bool:
        """True when :meth:`decode_attention` handles this head layout."""
        return bool(self.library.bl_attention_supported(n_heads, n_kv_heads, head_dim))

    def decode_attention(
        self,
        query: torch.Tensor,
        keys_t: torch.Tensor,
        values: torch.Tensor,
        valid: torch.Tensor,
        *,
        n_cols: int,
        scale: float,
    ) -> torch.Tensor:
        """float32 ``[B, heads * head_dim]`` attention of one query per row.

        ``query`` bf16 ``[B, heads, head_dim]`` (rows may be strided, heads packed);
        ``keys_t`` bf16 ``[B, kv_heads, head_dim, W]`` and ``values`` bf16
        ``[B, kv_heads, W, head_dim]``, contiguous; ``valid`` bool ``[B, >= n_cols]``
        (True = may attend). Cache columns ``0..n_cols-1`` are read:
        ``out[b, h] = sum_t softmax_t(scale * q[b, h] . k[b, g, :, t]) v[b, g, t]``
        over valid ``t``, ``g = h // (heads // kv_heads)``.
        """
        batch, n_heads, head_dim = query.shape
        n_kv_heads, width = keys_t.shape[1], keys_t.shape[3]
        if (
            query.dtype != torch.bfloat16 or keys_t.dtype != torch.bfloat16
            or values.dtype != torch.bfloat16 or valid.dtype != torch.bool
            or query.stride(2) != 1 or query.stride(1) != head_dim
            or not keys_t.is_contiguous() or not values.is_contiguous()
            or valid.dim() != 2 or valid.stride(1) != 1 or valid.shape[0] != batch
            or valid.shape[1] < n_cols
            or keys_t.shape != (batch, n_kv_heads, head_dim, width)
            or values.shape != (batch, n_kv_heads, width, head_dim)
        ):
            raise ValueError("decode_attention: unexpected tensor layout or dtype")
        out = torch.empty(batch, n_heads * head_dim, dtype=torch.float32)
        status = self.library.bl_decode_attention(
            query.data_ptr(), query.stride(0), keys_t.data_ptr(), values.data_ptr(), width,
            valid.data_ptr(), valid.stride(0), n_cols, out.data_ptr(), batch, n_heads,
            n_kv_heads, head_dim, scale, self._threads(),
        )
        if status != 0:
            raise ValueError(f"decode_attention: kernel status {status} "
                             f"(heads {n_heads}, kv heads {n_kv_heads}, head_dim {head_dim})")
        return out

    def quantize_rows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """int8 ``q`` and float32 ``row_scale`` ``[M, 1]`` of float32 ``x`` ``[M, K]``.

        ``row_scale = max(max_k |x|, 1e-12) / 127``, ``q = round_half_even(x / row_scale)``.
        """
        if x.dtype != torch.float32 or x.dim() != 2 or x.stride(1) != 1:
            raise ValueError("quantize_rows: x must be float32 [M, K] with unit column stride")
        rows, cols = x.shape
        quantised = torch.empty(rows, cols, dtype=torch.int8)
        row_scale = torch.empty(rows, 1, dtype=torch.float32)
        self.library.bl_quantize_rows(
            x.data_ptr(), rows, cols, x.stride(0), quantised.data_ptr(), row_scale.data_ptr(),
            self._threads(),
        )
        return quantised, row_scale

    def dequantize_(
        self, acc: torch.Tensor, col_scale: torch.Tensor, row_scale: torch.Tensor
    ) -> torch.Tensor:
        """``acc`` (int32 ``[M, N]``) reused as float32 ``acc * col_scale[n] * row_scale[m]``."""
        rows, cols = acc.shape
        if (
            acc.dtype != torch.int32 or not acc.is_contiguous()
            or col_scale.dtype != torch.float32 or col_scale.numel() != cols
            or row_scale.dtype != torch.float32 or row_scale.numel() != rows
            or not col_scale.is_contiguous() or not row_scale.is_contiguous()
        ):
            raise ValueError("dequantize_: unexpected tensor layout or dtype")
        self.library.bl_dequantize(
            acc.data_ptr(), rows, cols, col_scale.data_ptr(), row_scale.data_ptr(),
            self._threads(),
        )
        return acc.view(torch.float32)


    def top_candidates(
        self, logits: torch.Tensor, *, k: int, first: int, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row's ``k`` largest logits of float32 ``logits`` ``[B, V]``, the ``first``
        largest in the leading positions (neither part sorted), their token ids, the row
        maximum ``m`` and ``sum_v exp((l_v - m) / temperature)``; shapes ``[B, k]``,
        ``[B, k]``, ``[B, 1]``, ``[B, 1]``."""
        rows, vocab = logits.shape
        self._check("logits", logits, torch.float32, (rows, vocab))
        if not (0 <= first <= k and 1 <= k <= vocab) or temperature <= 0:
            raise ValueError(f"top_candidates: k {k}, first {first}, vocab {vocab}, "
                             f"temperature {temperature}")
        values = torch.empty(rows, k)
        indices = torch.empty(rows, k, dtype=torch.int64)
        row_max, row_total = torch.empty(rows, 1), torch.empty(rows, 1)
        self._status("top_candidates", self.library.bl_top_candidates(
            logits.data_ptr(), rows, vocab, k, first, 1.0 / temperature, values.data_ptr(),
            indices.data_ptr(), row_max.data_ptr(), row_total.data_ptr(), self._threads(),
        ))
        return values, indices, row_max, row_total

    def gathered_dot(
        self, table: torch.Tensor, states: torch.Tensor, ids: torch.Tensor
    ) -> torch.Tensor:
        """``out[m, j] = table[ids[m, j]] . states[m]`` (float32), without gathering rows."""
        vocab, hidden = table.shape
        rows, count = ids.shape
        self._check("table", table, torch.float32, (vocab, hidden))
        self._check("states", states, torch.float32, (rows, hidden))
        self._check("ids", ids, torch.int64, (rows, count))
        if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < vocab:
            raise ValueError(f"gathered_dot: token ids outside 0..{vocab - 1}")
        out = torch.empty(rows, count)
        self.library.bl_gathered_dot(table.data_ptr(), states.data_ptr(), ids.data_ptr(), rows,
                                     count, hidden, out.data_ptr(), self._threads())
        return out

    # ------------------------------------------------------------ fused int8 decode step
    # Inputs are those of the compact decoder's int8 layer; _check keeps a wrong
    # tensor from reaching C as a bad pointer.

    @staticmethod
    def _check(name: str, tensor: torch.Tensor, dtype: torch.dtype, shape: tuple[int, ...]):
        if tensor.dtype != dtype or tuple(tensor.shape) != shape or not tensor.is_contiguous():
            raise ValueError(f"{name}: expected contiguous {dtype} {list(shape)}, got "
                             f"{tensor.dtype} {list(tensor.shape)}")

    @staticmethod
    def _status(name: str, status: int) -> None:
        if status == -2:
            raise MemoryError(f"{name}: the kernel could not allocate its scratch memory")
        if status != 0:
            raise ValueError(f"{name}: the kernel refused its arguments (status {status})")

    def _quantised(self, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.empty(rows, cols, dtype=torch.int8), torch.empty(rows, 1)

    def norm_quantize(
        self, x: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """int8 rows of ``weight * x / sqrt(mean(x^2) + eps)`` (as :meth:`quantize_rows`)."""
        rows, cols = x.shape
        self._check("x", x, torch.float32, (rows, cols))
        self._check("weight", weight, torch.float32, (cols,))
        quantised, row_scale = self._quantised(rows, cols)
        self._status("norm_quantize", self.library.bl_norm_quantize(
            x.data_ptr(), rows, cols, weight.data_ptr(), eps, quantised.data_ptr(),
            row_scale.data_ptr(), self._threads(),
        ))
        return quantised, row_scale

    def residual_norm_quantize(
        self, acc: torch.Tensor, col_scale: torch.Tensor, acc_row_scale: torch.Tensor,
        x: torch.Tensor, weight: torch.Tensor | None, eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``x += acc * col_scale * acc_row_scale`` in place; then, with a ``weight``,
        :meth:`norm_quantize` of the new ``x``."""
        rows, cols = x.shape
        self._check("x", x, torch.float32, (rows, cols))
        self._check("acc", acc, torch.int32, (rows, cols))
        self._check("col_scale", col_scale, torch.float32, (cols,))
        self._check("acc_row_scale", acc_row_scale, torch.float32, (rows, 1))
        quantised = row_scale = None
        if weight is not None:
            self._check("weight", weight, torch.float32, (cols,))
            quantised, row_scale = self._quantised(rows, cols)
        self._status("residual_norm_quantize", self.library.bl_residual_norm_quantize(
            acc.data_ptr(), col_scale.data_ptr(), acc_row_scale.data_ptr(), x.data_ptr(), rows,
            cols, None if weight is None else weight.data_ptr(), eps,
            None if quantised is None else quantised.data_ptr(),
            None if row_scale is None else row_scale.data_ptr(), self._threads(),
        ))
        return None if quantised is None else (quantised, row_scale)

    def silu_quantize(
        self, acc: torch.Tensor, col_scale: torch.Tensor, acc_row_scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """int8 rows of ``silu(gate) * up``, ``[gate | up] = acc * col_scale * acc_row_scale``."""
        rows, cols = acc.shape
        self._check("acc", acc, torch.int32, (rows, cols))
        self._check("col_scale", col_scale, torch.float32, (cols,))
        self._check("acc_row_scale", acc_row_scale, torch.float32, (rows, 1))
        if cols % 2:
            raise ValueError(f"silu_quantize: [gate | up] needs an even width, got {cols}")
        quantised, row_scale = self._quantised(rows, cols // 2)
        self._status("silu_quantize", self.library.bl_silu_quantize(
            acc.data_ptr(), col_scale.data_ptr(), acc_row_scale.data_ptr(), rows, cols // 2,
            quantised.data_ptr(), row_scale.data_ptr(), self._threads(),
        ))
        return quantised, row_scale

    def rope_store(
        self, acc: torch.Tensor, col_scale: torch.Tensor | None,
        acc_row_scale: torch.Tensor | None, *, cos: torch.Tensor, sin: torch.Tensor,
        keys_t: torch.Tensor, values: torch.Tensor, column: int, n_heads: int,
    ) -> torch.Tensor:
        """bf16 queries ``[rows, n_heads, head_dim]`` after RoPE; rotated keys and the
        values written into cache column ``column`` (bf16). ``acc`` is the q/k/v matmul's
        int32 output with its scales, or its bf16 output with scales None."""
        rows, n_kv_heads, head_dim, width = keys_t.shape
        cols = (n_heads + 2 * n_kv_heads) * head_dim
        quantised = col_scale is not None and acc_row_scale is not None
        self._check("acc", acc, torch.int32 if quantised else torch.bfloat16, (rows, cols))
        if quantised:
            assert col_scale is not None and acc_row_scale is not None
            self._check("col_scale", col_scale, torch.float32, (cols,))
            self._check("acc_row_scale", acc_row_scale, torch.float32, (rows, 1))
        for name, table in (("cos", cos), ("sin", sin)):
            self._check(name, table, torch.float32, (rows, head_dim))
        self._check("keys_t", keys_t, torch.bfloat16, (rows, n_kv_heads, head_dim, width))
        self._check("values", values, torch.bfloat16, (rows, n_kv_heads, width, head_dim))
        if not 0 <= column < width or head_dim > 256 or head_dim % 2:
            raise ValueError(f"rope_store: column {column} of width {width}, "
                             f"head_dim {head_dim}")
        queries = torch.empty(rows, n_heads, head_dim, dtype=torch.bfloat16)
        self.library.bl_rope_store(
            acc.data_ptr() if quantised else None,
            col_scale.data_ptr() if quantised else None,  # type: ignore[union-attr]
            acc_row_scale.data_ptr() if quantised else None,  # type: ignore[union-attr]
            None if quantised else acc.data_ptr(), rows, n_heads,
            n_kv_heads, head_dim, cos.data_ptr(), sin.data_ptr(), queries.data_ptr(),
            keys_t.data_ptr(), values.data_ptr(), width, column, self._threads(),
        )
        return queries

    def norm_bf16(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """bf16 ``weight * x / sqrt(mean(x^2) + eps)`` of float32 rows ``x``."""
        rows, cols = x.shape
        self._check("x", x, torch.float32, (rows, cols))
        self._check("weight", weight, torch.bfloat16, (cols,))
        out = torch.empty(rows, cols, dtype=torch.bfloat16)
        self._status("norm_bf16", self.library.bl_norm_bf16(
            x.data_ptr(), rows, cols, weight.data_ptr(), eps, out.data_ptr(), self._threads()))
        return out

    def residual_norm_bf16(
        self, delta: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, eps: float
    ) -> torch.Tensor | None:
        """``x += delta`` (bf16 into float32, in place); then, with a ``weight``,
        :meth:`norm_bf16` of the new ``x``."""
        rows, cols = x.shape
        self._check("x", x, torch.float32, (rows, cols))
        self._check("delta", delta, torch.bfloat16, (rows, cols))
        out = None
        if weight is not None:
            self._check("weight", weight, torch.bfloat16, (cols,))
            out = torch.empty(rows, cols, dtype=torch.bfloat16)
        self._status("residual_norm_bf16", self.library.bl_residual_norm_bf16(
            delta.data_ptr(), x.data_ptr(), rows, cols,
            None if weight is None else weight.data_ptr(), eps,
            None if out is None else out.data_ptr(), self._threads(),
        ))
        return out

    def silu_bf16(self, gate_up: torch.Tensor) -> torch.Tensor:
        """bf16 ``silu(gate) * up`` of bf16 rows ``[gate | up]``."""
        rows, cols = gate_up.shape
        self._check("gate_up", gate_up, torch.bfloat16, (rows, cols))
        if cols % 2:
            raise ValueError(f"silu_bf16: [gate | up] needs an even width, got {cols}")
        out = torch.empty(rows, cols // 2, dtype=torch.bfloat16)
        self.library.bl_silu_bf16(gate_up.data_ptr(), rows, cols // 2, out.data_ptr(),
                                  self._threads())
        return out


def cache_dir() -> Path:
    """Where compiled kernels are kept (see the module docstring)."""
    if os.environ.get("BIASLOOP_KERNEL_CACHE"):
        return Path(os.environ["BIASLOOP_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "biasloop" / "kernels"


def find_compiler() -> str:
    """The C compiler to use: ``$CC``, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return os.environ["CC"]
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    raise NativeKernelsUnavailable("no C compiler found (set CC, or install gcc or clang)")


def _one_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or ["(no output)"])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NativeKernelsUnavailable(f"{command[0]}: {_one_line(str(error))}") from None


def library_path(compiler: str) -> Path:
    """The cached library's path for this source, compiler, flags and CPU."""
    version = _run([compiler, "--version"])
    if version.returncode != 0:
        raise NativeKernelsUnavailable(
            f"C compiler {compiler!r} does not run: {_one_line(version.stderr)}"
        )
    key = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(), compiler.encode(), version.stdout.encode(),
        " ".join(COMPILE_FLAGS).encode(), platform.machine().encode(),
        " ".join(sorted(cpu_flags())).encode(),
    ):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"native_kernels-{key.hexdigest()[:20]}.so"


def _compile(compiler: str, target: Path) -> None:
    """Compile the source to ``target`` atomically (a temporary file, then a rename)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
        os.close(handle)
    except OSError as error:
        raise NativeKernelsUnavailable(
            f"kernel cache {str(target.parent)!r} is not writable: {error.strerror}; "
            "set BIASLOOP_KERNEL_CACHE to a writable folder"
        ) from None
    try:
        result = _run([compiler, *COMPILE_FLAGS, str(SOURCE), "-o", temporary, "-lm"])
        if result.returncode != 0:
            raise NativeKernelsUnavailable(
                f"{compiler} could not compile {SOURCE.name}: {_one_line(result.stderr)}"
            )
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _load(path: Path) -> NativeKernels:
    try:
        library = ctypes.CDLL(str(path))
    except OSError as error:
        raise NativeKernelsUnavailable(f"cannot load {path}: {_one_line(str(error))}") from None
    for name, (arguments, result) in _SIGNATURES.items():
        function = getattr(library, name, None)
        if function is None:
            raise NativeKernelsUnavailable(f"{path} lacks {name}")
        function.argtypes, function.restype = arguments, result
    if library.bl_abi_version() != ABI_VERSION:
        raise NativeKernelsUnavailable(f"{path} has ABI {library.bl_abi_version()}, "
                                       f"expected {ABI_VERSION}")
    return NativeKernels(library=library, path=path)


_lock = threading.Lock()
_outcome: NativeKernels | NativeKernelsUnavailable | None = None


def load_native_kernels() -> NativeKernels:
    """The kernels, compiled if needed; raises :class:`NativeKernelsUnavailable`.

    The outcome, success or failure, is kept for the rest of the process.
    """
    global _outcome
    with _lock:
        if _outcome is None:
            _outcome = _build()
        if isinstance(_outcome, NativeKernelsUnavailable):
            raise _outcome
        return _outcome


def _build() -> NativeKernels | NativeKernelsUnavailable:
    try:
        compiler = find_compiler()
        path = library_path(compiler)
        if not path.exists():
            start = time.perf_counter()
            logger.info("compiling the native decode kernels with %s (once per machine)",
                        compiler)
            _compile(compiler, path)
            logger.info("compiled %s in %.1f s", path.name, time.perf_counter() - start)
        return _load(path)
    except NativeKernelsUnavailable as error:
        return error


def reset_for_tests() -> None:
    """Forget the kept outcome, so the next load tries again."""
    global _outcome
    with _lock:
        _outcome = None
