"""The six MAD tasks, registered through the same hook as any third-party plugin."""
import madbench

from .compression import Compression
from .fuzzy_recall import FuzzyInContextRecall
from .memorization import Memorization
from .recall import InContextRecall, NoisyInContextRecall
from .selective_copying import SelectiveCopying

#: mad-lab's registry order (and that of the paper's grid)
TASKS = (InContextRecall(), NoisyInContextRecall(), FuzzyInContextRecall(), Memorization(),
         Compression(), SelectiveCopying())


@madbench.hookimpl
def madbench_register_tasks(register):
    for task in TASKS:
        register(task.name, task)
