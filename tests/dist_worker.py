"""Run by tests/test_dist.py under torchrun: one job from a config file, then each
rank's final weights saved as ``DUMP/rank<R>.pt`` (only rank 0 writes the run dir)."""

import os
import sys

import torch

from grownet.grow.job import start_job
from grownet.runs import RunConfig

if __name__ == "__main__":
    config, out, dump = sys.argv[1:4]
    result = start_job(RunConfig.from_toml(config), out, quiet=True)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    torch.save(state, os.path.join(dump, f"rank{os.environ['RANK']}.pt"))
