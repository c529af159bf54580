"""`recsys` with rank 0 killed by SIGKILL as it starts optimizer step K (after K steps), for
the kill-and-resume tests; everything else is the real `recsys_cli.main` under torchrun.

    python -m torch.distributed.run --nproc_per_node 2 -m tests.dist._kill_rank0 5 pretrain --data R ...
"""

from __future__ import annotations

import os
import signal
import sys

from recsys_cli.training import loop

KILL_AT = int(sys.argv[1])
_examples = loop.Trainer.examples


def _examples_or_die(self, step: int, micro: int):
    if self.rank == 0 and step == KILL_AT and micro == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return _examples(self, step, micro)


loop.Trainer.examples = _examples_or_die

if __name__ == "__main__":
    from recsys_cli.main import main

    main(sys.argv[2:])
