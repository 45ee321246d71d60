"""m2hse tests run on one CPU thread (the machine is shared; small tensors are faster so)."""
import torch

torch.set_num_threads(1)
