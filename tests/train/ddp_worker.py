"""Run by ``torchrun`` in test_ddp.py: a short data-parallel training run; each rank saves its weights."""

import sys

import torch

from napari_sam2med.engine import run_to_end
from napari_sam2med.train.config import TrainConfig
from napari_sam2med.train.trainer import train

if __name__ == "__main__":
    torch.set_num_threads(1)
    data, out = sys.argv[1], sys.argv[2]
    cfg = TrainConfig(data=[data], out=out, val=1, model="sam2.1-test", random_init=True, image_size=64,
                      device="cpu", frames=2, max_objects=2, steps=3, batch=2, val_every=0, lr=1e-3, warmup=1,
                      save_every_s=1e9, seed=5)
    res = run_to_end(train(cfg))
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save(res.model.state_dict(), f"{out}/rank{rank}.pt")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
