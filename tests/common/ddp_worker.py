"""Run under torchrun by test_common_runtime: each rank trains on its half of a fixed batch with
DDP and writes its averaged gradients, gathered rows and sampler indices to OUT_DIR."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from common.runtime import (all_gather_cat, cleanup_distributed, distributed_sampler,  # noqa: E402
                            init_distributed, is_main_process, wrap_ddp)


def main(out_dir):
    info = init_distributed('cpu')
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    ddp = wrap_ddp(model, info)
    inputs = torch.linspace(-1, 1, 32).reshape(8, 4)
    targets = torch.arange(8, dtype=torch.float32).reshape(8, 1) / 8
    half = slice(info.rank * 4, info.rank * 4 + 4)
    loss = torch.nn.functional.mse_loss(ddp(inputs[half]), targets[half])
    loss.backward()
    grads = [p.grad.tolist() for p in model.parameters()]
    rows = all_gather_cat(torch.full((info.rank + 1, 2), float(info.rank)))
    sampler = distributed_sampler(list(range(10)), shuffle=False)
    with open(os.path.join(out_dir, 'rank%d.json' % info.rank), 'w') as f:
        json.dump({'grads': grads, 'rows': rows.tolist(), 'world': info.world_size,
                   'main': is_main_process(), 'indices': list(iter(sampler))}, f)
    cleanup_distributed()


if __name__ == '__main__':
    main(sys.argv[1])
