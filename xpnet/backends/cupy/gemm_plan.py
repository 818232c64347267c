"""The layout plan of a cuBLAS GEMM for row-major (C-order) operands: pure, so it is tested on a CPU
against a NumPy emulation of column-major GEMM (cublas.py makes the call)."""
from __future__ import annotations

from dataclasses import dataclass

OP_N, OP_T = 0, 1  # cublasOperation_t
_INT_MAX = 2**31 - 1  # the _v2 GEMMs take 32-bit int sizes and leading dimensions


@dataclass(frozen=True)
class GemmPlan:
    """One column-major call cublas?gemm(transa, transb, m, n, k, 1, B, lda, A, ldb, 0, C, ldc) computing
    the row-major C = A @ B, read as C^T = B^T A^T: cuBLAS's first operand is the caller's `b`, its second
    the caller's `a`, each passed by the address of its [0, 0] element; C is C-contiguous (m_rows, n_cols)."""

    transa: int  # op on cuBLAS's first operand, the caller's b
    transb: int  # op on cuBLAS's second operand, the caller's a
    m: int  # rows of C^T: the caller's n
    n: int  # columns of C^T: the caller's m
    k: int
    lda: int  # leading dimension of b's buffer
    ldb: int  # leading dimension of a's buffer
    ldc: int


def _operand(rows: int, cols: int, s_rows: int, s_cols: int, itemsize: int) -> tuple[int, int] | None:
    """(op, ld) presenting the row-major (rows, cols) operand to cuBLAS as its transpose (cols, rows), or None.

    Row-major with unit column stride is, read column-major with ld = row stride, the (cols, rows) transpose
    itself: op N. Unit row stride (a transposed view such as x.mT) is, with ld = column stride, the matrix
    (rows, cols) column-major: op T. The stride of a size-1 dimension is never stepped, so any value is fine
    there and its ld is set to the smallest legal one."""
    if rows == 0 or cols == 0:
        return OP_N, max(1, cols)  # nothing is read
    if s_rows % itemsize or s_cols % itemsize:
        return None
    s_rows, s_cols = s_rows // itemsize, s_cols // itemsize
    # op N: column-major (cols, rows) with ld = s_rows; needs unit stride along cols and ld >= cols.
    if cols <= 1 or s_cols == 1:
        ld = max(1, cols) if rows <= 1 else s_rows
        if max(1, cols) <= ld <= _INT_MAX:
            return OP_N, ld
    # op T: column-major (rows, cols) with ld = s_cols; needs unit stride along rows and ld >= rows.
    if rows <= 1 or s_rows == 1:
        ld = max(1, rows) if cols <= 1 else s_cols
        if max(1, rows) <= ld <= _INT_MAX:
            return OP_T, ld
    return None  # neither dimension has unit stride, or strides are negative, zero (broadcast) or overlapping


def gemm_plan(shape_a: tuple[int, ...], strides_a: tuple[int, ...], shape_b: tuple[int, ...],
              strides_b: tuple[int, ...], itemsize: int) -> GemmPlan | None:
    """The cuBLAS call for C = A @ B (A: (m, k), B: (k, n), strides in bytes as NumPy/CuPy give them, C a
    C-contiguous (m, n) output), or None when an operand must be made contiguous first."""
    (m, k), (k2, n) = shape_a, shape_b
    if k != k2:
        raise ValueError(f"matmul shapes {tuple(shape_a)} and {tuple(shape_b)} do not match")
    if max(m, n, k) > _INT_MAX:
        raise ValueError(f"matmul dimension over 2**31-1: {tuple(shape_a)} @ {tuple(shape_b)}")
    b_op = _operand(k, n, strides_b[0], strides_b[1], itemsize)
    a_op = _operand(m, k, strides_a[0], strides_a[1], itemsize)
    if a_op is None or b_op is None:
        return None
    return GemmPlan(transa=b_op[0], transb=a_op[0], m=n, n=m, k=k, lda=b_op[1], ldb=a_op[1], ldc=max(1, n))


