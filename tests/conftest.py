"""Shared test set-up.

The tests train tiny models; on a 2-core machine torch's intra-op threads cost more in
synchronisation than they save on such small tensors (seen here: one test 40x slower
with 2 threads than with 1), so the suite runs single-threaded.
"""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocess tests
torch.set_num_threads(1)
