"""A model server's prefix cache, as vLLM's automatic prefix caching keeps one: the prompt in blocks
of BLOCK tokens, each named by the hash of everything up to its end, least recently used blocks
evicted past a fixed capacity. A request reuses its leading blocks that are still cached; then
its prompt and the tokens written for it are cached."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

BLOCK = 16


class PrefixCache:
    def __init__(self, capacity_tokens: int) -> None:
        self.capacity = max(1, capacity_tokens // BLOCK)
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self.prompt_tokens = 0  # over all requests
        self.reused_tokens = 0  # of those, the ones the cache held

    def serve(self, prompt: Sequence[str], written: Sequence[str]) -> int:
        """Account for one request; returns how many of its prompt tokens were reused."""
        hashes = _block_hashes(prompt)
        reused = 0
        for block in hashes:
            if block not in self._blocks:
                break
            reused += 1
        self.prompt_tokens += len(prompt)
        self.reused_tokens += reused * BLOCK
        for block in _block_hashes([*prompt, *written]):
            self._blocks[block] = None
            self._blocks.move_to_end(block)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
        return reused * BLOCK


def _block_hashes(tokens: Sequence[str]) -> list[int]:
    hashes, running = [], 0
    for start in range(0, len(tokens) - len(tokens) % BLOCK, BLOCK):
        running = hash((running, tuple(tokens[start : start + BLOCK])))
        hashes.append(running)
    return hashes
