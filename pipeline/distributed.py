"""Data-parallel training over several processes (torchrun + DistributedDataParallel), and the one
process it reduces to when there is no launcher.

    make train NPROC=2   # torchrun --standalone --nproc-per-node 2 -m pipeline.train ...

torchrun sets RANK, LOCAL_RANK, LOCAL_WORLD_SIZE and WORLD_SIZE; `World.from_env` reads them.
The backend is gloo on the CPU and NCCL on CUDA (one GPU per rank, cuda:LOCAL_RANK).

Semantics do not depend on the world size: the global batch is the recipe's batch, drawn from one
seeded permutation per epoch and cut into WORLD_SIZE near-equal per-rank slices (`shard_batches`);
DDP averages the slices' gradients, so each step is the single-process step up to the order of
floating-point sums, with the recipe's learning rate and schedule unchanged. Only rank 0 evaluates
and writes files; a resumed run gets rank 0's checkpoint by broadcast, so nodes need not share a disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    local_size: int = 1
    size: int = 1

    @classmethod
    def from_env(cls) -> World:
        """The launcher's view of this process; a plain `python -m pipeline.train` is a world of one."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]),
                   int(os.environ.get("LOCAL_WORLD_SIZE", size)), size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def backend_name(device: torch.device, world: World) -> str | None:
    """gloo on the CPU, NCCL on CUDA; None for a world of one."""
    if not world.distributed:
        return None
    return "nccl" if device.type == "cuda" else "gloo"


def init(world: World, device: torch.device) -> str | None:
    """Join the process group; returns the backend (None alone)."""
    backend = backend_name(device, world)
    if backend is None:
        return None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return backend


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's `value` on every rank (pickled; for checkpoints, not for per-step data)."""
    if not world.distributed:
        return value
    box = [value if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard_batches(world: World) -> Callable[..., Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """Like pipeline.batches.shuffled_batches, but each rank gets its slice of every global batch.

    Every rank draws the same permutation (same seed, same generator state), cuts it into global
    batches of `batch_size`, and keeps slice `rank` of each (torch.tensor_split: sizes differ by at
    most one), so the ranks' slices are disjoint and together are the epoch. A last partial batch
    with fewer rows than ranks is dropped: a rank with no rows cannot take part in the step.
    """

    def batches(split, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(split), generator=generator).to(split.inputs.device)
        for index in order.split(batch_size):
            if len(index) < world.size:
                return
            mine = index.tensor_split(world.size)[world.rank]
            yield split.rows(mine)

    return batches
