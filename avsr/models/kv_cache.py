"""Self-attention key/value cache for incremental decoding, kept in reusable storage.

Growing a cache with ``torch.cat`` and reordering it by beam parents with ``index_select``
copies it twice per step into freshly allocated memory; on CPU a fresh allocation of a large
tensor is an ``mmap`` whose every page faults on first touch, which cost more than the copies
themselves. Here a step writes the new position in place, a reorder is one ``index_select``
of the valid positions into recycled storage, and the keys/values of a step are always one
contiguous tensor (the attention of a single query is several times slower on a strided one).
"""

from __future__ import annotations

import torch

__all__ = ["KVCache"]


class _Pool:
    """Free flat buffers of one decoding run, reused by later caches of the same run."""

    def __init__(self, max_positions: int | None) -> None:
        self.max_positions = max_positions
        self.free: list[torch.Tensor] = []

    def take(self, numel: int, alloc_numel: int, like: torch.Tensor) -> _Block:
        for i, data in enumerate(self.free):
            if data.numel() >= numel and data.dtype == like.dtype and data.device == like.device:
                return _Block(self.free.pop(i), self)
        return _Block(like.new_empty(alloc_numel), self)


class _Block:
    """Flat storage viewed by one or more caches (a step's output shares its input's block).

    ``filled`` is the number of positions written so far: a second step from the same state
    finds its position taken and copies instead of overwriting a sibling's keys/values. When
    the last cache viewing the block is garbage collected its storage returns to the pool.
    """

    __slots__ = ("data", "filled", "pool")

    def __init__(self, data: torch.Tensor, pool: _Pool) -> None:
        self.data = data
        self.filled = 0
        self.pool = pool

    def __del__(self) -> None:
        try:
            if len(self.pool.free) < 2:
                self.pool.free.append(self.data)
        except Exception:  # interpreter shutdown
            pass


def _allocate(pool: _Pool, shape: tuple[int, ...], like: torch.Tensor) -> KVCache:
    """A cache of ``shape`` (2 · layers, N, H, P, D / H) over a free block of the pool; the
    block is sized for ``pool.max_positions`` positions (or twice P) so later ones fit."""
    per_position = shape[0] * shape[1] * shape[2] * shape[4]
    reserve = max(shape[3], pool.max_positions or 2 * shape[3])
    block = pool.take(per_position * shape[3], per_position * reserve, like)
    return KVCache(block.data[:per_position * shape[3]].view(shape), block)


class KVCache:
    """Keys and values of every decoder layer for N sequences.

    ``kv`` is a contiguous (2 · layers, N, H, P, D / H) view of the block's storage: rows 2i and
    2i + 1 are layer i's keys and values; P >= the positions in use. Instances are immutable
    from the outside: :meth:`advance` and :meth:`select` return new caches and leave the valid
    positions of their input untouched.
    """

    def __init__(self, kv: torch.Tensor, block: _Block) -> None:
        self.kv = kv
        self._block = block

    @classmethod
    def empty(cls, num_layers: int, rows: int, num_heads: int, head_dim: int,
              like: torch.Tensor, max_positions: int | None = None) -> KVCache:
        """A cache with room for the first position.

        Args:
            num_layers, rows, num_heads, head_dim: shape of the keys/values (N = rows).
            like: dtype and device of the keys/values.
            max_positions: expected longest sequence; sizes the storage once so that a run of
                reorders reuses it (``None``: grow geometrically).
        """
        shape = (2 * num_layers, rows, num_heads, 1, head_dim)
        return _allocate(_Pool(max_positions), shape, like)

    def _relayout(self, shape: tuple[int, ...], length: int, index: torch.Tensor | None
                  ) -> KVCache:
        """New cache of the given shape holding the first ``length`` positions of this one's
        rows ``index`` (all rows if None), in storage that no live cache uses."""
        out = _allocate(self._block.pool, shape, self.kv)
        if length:
            source = self.kv[:, :, :, :length]
            target = out.kv[:, :, :, :length]
            if index is None:
                target.copy_(source)
            else:
                torch.index_select(source, 1, index, out=target)
        out._block.filled = length
        return out

    def advance(self, length: int) -> KVCache:
        """A cache whose position ``length`` may be written (positions before it valid).

        In place when the storage has room and no other step has claimed that position;
        otherwise the valid positions move to storage laid out for exactly ``length + 1``.
        """
        block = self._block
        if self.kv.shape[3] > length and block.filled == length:
            block.filled = length + 1
            return KVCache(self.kv, block)
        shape = self.kv.shape[:3] + (length + 1,) + self.kv.shape[4:]
        out = self._relayout(tuple(shape), length, None)
        out._block.filled = length + 1
        return out

    def select(self, index: torch.Tensor, length: int) -> KVCache:
        """Rows ``index`` (N',) of the first ``length`` positions, with room for one more."""
        shape = self.kv.shape[:1] + (len(index),) + self.kv.shape[2:3] + (length + 1,) \
            + self.kv.shape[4:]
        return self._relayout(tuple(shape), length, index)

    def keys(self, layer: int, length: int) -> torch.Tensor:
        """(N, H, length, D / H) keys of ``layer``."""
        return self.kv[2 * layer, :, :, :length]

    def values(self, layer: int, length: int) -> torch.Tensor:
        """(N, H, length, D / H) values of ``layer``."""
        return self.kv[2 * layer + 1, :, :, :length]
