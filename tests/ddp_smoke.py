"""Run by test_training.py under `torch.distributed.run --nproc_per_node 2`: 3 DDP steps on CPU."""

import json
import sys

import torch
from accelerate import Accelerator
from tiny import tiny_d2l

from d2l_memory.data.types import QA, Sample
from d2l_memory.training.teacher import compute_targets
from d2l_memory.training.trainer import TrainConfig, Trainer

out = sys.argv[1]
acc = Accelerator(cpu=True)
d2l = tiny_d2l(seed=0)
samples = [Sample(context=f"The special magic number is {w}.", qas=(QA("What is the special magic number?", w),),
                  kind="niah", id=f"s{i}") for i, w in enumerate(["green", "blue", "sky", "sun"])]
tr = Trainer(d2l, samples, compute_targets(d2l, samples, use_teacher=False),
             TrainConfig(out_dir=out, steps=3, docs_per_step=2, qas_per_doc=1, warmup=1, lr=1e-3, save_every=3),
             accelerator=acc)
hist = tr.train()
flat = torch.cat([p.detach().flatten() for p in d2l.hypernet.parameters()])
with open(f"{out}/rank{acc.process_index}.json", "w") as f:
    json.dump({"world": acc.num_processes, "losses": [h["loss"] for h in hist], "checksum": flat.double().sum().item(),
               "first_doc": tr.batch_for(0)[0][0].id}, f)
